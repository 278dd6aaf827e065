"""The keyword index of a build updated from the current one when few articles changed.

A reindex after an editor changed one article used to write the whole Whoosh index anew,
which grows with the knowledge base (issue 14); now the current build's index is copied
and only the touched articles are deleted and added. These tests build the bundled
articles with the fake embedder and compare updated indexes with ones written anew.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from kbsearch.index import builds
from kbsearch.index.builds import build_index, open_index

from .conftest import ARTICLES

NEW_WORD = "Quokkaversicherung"


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    """A copy of the bundled articles that a test may change."""
    folder = tmp_path / "kb"
    shutil.copytree(ARTICLES, folder)
    return folder


def keyword_index(report: builds.BuildReport) -> dict:
    """Return the manifest's description of a build's keyword index."""
    return json.loads((report.path / "manifest.json").read_text("utf-8"))["keyword_index"]


def folder_digest(folder: Path) -> dict[str, str]:
    """Return the SHA-256 of every file below a folder, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def article(kb: Path, article_id: str) -> Path:
    """Return the file of an article (the knowledge base has subfolders)."""
    return next(kb.rglob(f"{article_id}.md"))


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text("utf-8") + f"\n{text}\n", "utf-8")


def top_ids(index: Path, query: str, limit: int = 100) -> list[str]:
    reader = open_index(index)
    try:
        return reader.keyword.search(query, limit)[0]
    finally:
        reader.keyword.close()


def test_a_changed_and_a_removed_article_update_the_keyword_index(
    kb: Path, tmp_path: Path, fake_embedder
) -> None:
    """Changing one article and then removing another update the current index (the
    previous build's files untouched): the new word finds the changed article, the
    removed one is found no more, and every query matches the articles an index written
    anew matches, best first alike."""
    index = tmp_path / "index"
    first = build_index(kb, index, fake_embedder)
    assert keyword_index(first) == {"written": "anew", "updates": 0}
    before = folder_digest(first.path / "keyword")
    append(article(kb, "abschlag-anpassen"), f"Neu: die {NEW_WORD} für Abschläge im Winter.")
    second = build_index(kb, index, fake_embedder)
    assert second.changed == ("abschlag-anpassen",)
    assert keyword_index(second) == {"written": "updated", "updates": 1}
    assert folder_digest(first.path / "keyword") == before
    assert top_ids(index, NEW_WORD) == ["abschlag-anpassen"]

    assert "router-stoerung-en" in top_ids(index, "router blinking red")
    article(kb, "router-stoerung-en").unlink()
    third = build_index(kb, index, fake_embedder)
    assert keyword_index(third) == {"written": "updated", "updates": 2}
    assert "router-stoerung-en" not in top_ids(index, "router blinking red")

    fresh = tmp_path / "fresh"
    build_index(kb, fresh, fake_embedder)
    queries = [path.stem.replace("-", " ") for path in sorted(kb.rglob("*.md"))]
    queries += [NEW_WORD, "Zählerstand melden", "router blinking red", "Abschlag Winter"]
    same_first = 0
    for query in queries:
        updated, anew = top_ids(index, query), top_ids(fresh, query)
        assert sorted(updated) == sorted(anew), query
        same_first += bool(updated) and updated[0] == anew[0]
    # deleted documents count in BM25's statistics until Whoosh merges their segment
    assert same_first >= 0.9 * sum(bool(top_ids(fresh, q)) for q in queries)


def test_changed_synonyms_or_many_changed_articles_write_the_index_anew(
    kb: Path, tmp_path: Path, fake_embedder
) -> None:
    """A changed synonyms file, or more than a tenth of the articles changed: the keyword
    index is written anew (so every article is analysed with the same rules)."""
    index = tmp_path / "index"
    build_index(kb, index, fake_embedder)
    append(kb / "synonyms.txt", "Quokka, Kurzkopfkänguru")
    report = build_index(kb, index, fake_embedder)
    assert report.synonyms_changed
    assert keyword_index(report) == {"written": "anew", "updates": 0}
    articles = sorted(kb.rglob("*.md"))
    touched = int(len(articles) * builds.KEYWORD_UPDATE_SHARE) + 1
    for path in articles[:touched]:
        append(path, "Ein neuer Satz.")
    report = build_index(kb, index, fake_embedder)
    assert len(report.changed) == touched
    assert keyword_index(report) == {"written": "anew", "updates": 0}
    append(articles[0], "Noch ein Satz.")
    assert keyword_index(build_index(kb, index, fake_embedder))["written"] == "updated"


def test_the_keyword_index_is_written_anew_every_so_many_builds(
    kb: Path, tmp_path: Path, fake_embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After KEYWORD_UPDATES - 1 updates the next build writes the index anew, so that
    the compounds of unchanged articles are split by the current lexicon again."""
    monkeypatch.setattr(builds, "KEYWORD_UPDATES", 3)
    index = tmp_path / "index"
    written = []
    for round_ in range(5):
        append(article(kb, "umzug-melden"), f"Satz {round_}.")
        written.append(tuple(keyword_index(build_index(kb, index, fake_embedder)).values()))
    assert written == [("anew", 0), ("updated", 1), ("updated", 2), ("anew", 0),
                       ("updated", 1)]


def test_a_build_of_another_kbsearch_version_is_not_updated(
    kb: Path, tmp_path: Path, fake_embedder
) -> None:
    """Another kbsearch version may analyse words or cut chunks otherwise: its keyword
    index is written anew and its articles parsed and cut again (vectors still reused)."""
    index = tmp_path / "index"
    first = build_index(kb, index, fake_embedder)
    manifest_path = first.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text("utf-8"))
    manifest_path.write_text(json.dumps({**manifest, "kbsearch_version": "0.0.1"}), "utf-8")
    append(article(kb, "umzug-melden"), "Ein neuer Satz.")
    second = build_index(kb, index, fake_embedder)
    assert keyword_index(second) == {"written": "anew", "updates": 0}
    assert second.changed == ("umzug-melden",) and 1 <= second.embedded <= 2


def test_an_updated_index_keeps_the_lexicon_and_adds_the_touched_articles_words(
    kb: Path, tmp_path: Path, fake_embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update adds the changed article's words to the current lexicon (a superset of
    what a fresh build collects); a removed article's words go when the index is written
    anew."""
    from kbsearch.content.analysis import Lexicon
    from kbsearch.index.keyword import read_lexicon

    index = tmp_path / "index"
    before = read_lexicon(build_index(kb, index, fake_embedder).path / "keyword")
    sentence = f"Neu: die {NEW_WORD} für Abschläge im Winter."
    append(article(kb, "abschlag-anpassen"), sentence)
    updated = build_index(kb, index, fake_embedder)
    assert keyword_index(updated)["written"] == "updated"
    words = read_lexicon(updated.path / "keyword")
    assert "quokkaversicherung" in words and before < words
    assert words - before <= Lexicon.from_texts([sentence]).words
    fresh = build_index(kb, tmp_path / "fresh", fake_embedder)
    assert read_lexicon(fresh.path / "keyword") == words  # nothing was removed

    article(kb, "abschlag-anpassen").unlink()
    assert "quokkaversicherung" in read_lexicon(
        build_index(kb, index, fake_embedder).path / "keyword")
    monkeypatch.setattr(builds, "KEYWORD_UPDATES", 1)  # the next build writes anew
    append(article(kb, "umzug-melden"), "Ein Satz.")
    anew = build_index(kb, index, fake_embedder)
    assert keyword_index(anew)["written"] == "anew"
    assert "quokkaversicherung" not in read_lexicon(anew.path / "keyword")


def test_an_update_shares_the_unchanged_index_files_with_the_current_build(
    kb: Path, tmp_path: Path, fake_embedder
) -> None:
    """The copy is made of hard links (Whoosh never rewrites a file), and neither Whoosh
    nor the lexicon and synonyms files written anew change the current build's files."""
    index = tmp_path / "index"
    first = build_index(kb, index, fake_embedder)
    before = folder_digest(first.path / "keyword")
    append(article(kb, "abschlag-anpassen"), f"Neu: die {NEW_WORD}.")
    second = build_index(kb, index, fake_embedder)
    assert keyword_index(second)["written"] == "updated"
    assert folder_digest(first.path / "keyword") == before
    old = {p.name: p.stat().st_ino for p in (first.path / "keyword").iterdir()}
    new = {p.name: p.stat().st_ino for p in (second.path / "keyword").iterdir()}
    shared = {name for name in old if new.get(name) == old[name]}
    assert any(name.endswith(".seg") for name in shared)
    assert not shared & {"lexicon.txt", "synonyms.txt"}
    assert top_ids(index, NEW_WORD) == ["abschlag-anpassen"]
