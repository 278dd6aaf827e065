import json
import shutil

import numpy as np
import pytest

from kbsearch.errors import IndexBuildError, IndexFormatError, IndexNotFoundError
from kbsearch.index.builds import (
    BUILDS,
    build_index,
    current_version,
    list_builds,
    open_index,
)


class CountingEmbedder:
    """An embedder that counts what it embeds; can be told to fail mid-build."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.max_tokens = inner.max_tokens
        self.query_prompt = inner.query_prompt
        self.passage_prompt = inner.passage_prompt
        self.passages: list[str] = []
        self.fail_after = fail_after

    def count_tokens(self, text):
        return self.inner.count_tokens(text)

    def embed_queries(self, texts):
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts, progress=False):
        if self.fail_after is not None and len(self.passages) + len(texts) > self.fail_after:
            raise RuntimeError("simulated crash while embedding")
        self.passages.extend(texts)
        return self.inner.embed_passages(texts)


def test_build_writes_a_complete_versioned_build(small_kb, tmp_path, fake_embedder):
    index_dir = tmp_path / "index"
    report = build_index(small_kb, index_dir, fake_embedder)
    assert report.articles == 4 and report.embedded == report.chunks > 4
    assert current_version(index_dir) == report.version
    build = index_dir / BUILDS / report.version
    manifest = json.loads((build / "manifest.json").read_text())
    assert manifest["model"]["dimension"] == 384
    assert manifest["articles"] == 4 and manifest["dense_index"] == "flat"
    assert set(manifest["content_hashes"]) == {
        "zaehlerstand-melden", "abschlag-anpassen", "router-stoerung-en",
        "kulanz-gutschrift-regeln",
    }
    assert manifest["kbsearch_version"]
    vectors = np.load(build / "chunk_vectors.npy")
    assert vectors.shape == (report.chunks, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)


def test_incremental_build_embeds_only_changed_text(small_kb, tmp_path, fake_embedder):
    index_dir = tmp_path / "index"
    first = build_index(small_kb, index_dir, fake_embedder)
    path = small_kb / "abschlag-anpassen.md"
    path.write_text(path.read_text("utf-8") + "\nNeuer Absatz über Abschläge im Winter.\n")
    counting = CountingEmbedder(fake_embedder)
    second = build_index(small_kb, index_dir, counting)
    assert second.changed == ("abschlag-anpassen",)
    assert second.added == () and second.removed == ()
    assert 1 <= second.embedded <= 2
    assert second.reused == second.chunks - second.embedded
    assert all("Abschl" in text or "abschl" in text.lower() for text in counting.passages)
    assert second.version != first.version
    (small_kb / "router-stoerung-en.md").unlink()
    third = build_index(small_kb, index_dir, CountingEmbedder(fake_embedder))
    assert third.removed == ("router-stoerung-en",) and third.embedded == 0


def test_failed_build_leaves_the_current_index_serving(small_kb, tmp_path, fake_embedder):
    index_dir = tmp_path / "index"
    good = build_index(small_kb, index_dir, fake_embedder)
    (small_kb / "new.md").write_text(
        (small_kb / "abschlag-anpassen.md").read_text("utf-8")
        .replace("id: abschlag-anpassen", "id: neu-artikel"),
        "utf-8",
    )
    path = small_kb / "zaehlerstand-melden.md"
    path.write_text(path.read_text("utf-8") + "\nGeändert.\n", "utf-8")
    with pytest.raises(IndexBuildError, match="current index is unchanged"):
        build_index(small_kb, index_dir, CountingEmbedder(fake_embedder, fail_after=0))
    assert current_version(index_dir) == good.version
    assert list_builds(index_dir) == [good.version]
    assert not list((index_dir / BUILDS).glob(".staging-*"))
    loaded = open_index(index_dir)
    assert len(loaded.articles) == 4


def test_strict_build_refuses_invalid_articles(small_kb, tmp_path, fake_embedder):
    (small_kb / "broken.md").write_text("---\nid: x\n---\n", "utf-8")
    with pytest.raises(IndexBuildError, match="--strict"):
        build_index(small_kb, tmp_path / "index", fake_embedder, strict=True)
    assert current_version(tmp_path / "index") is None
    report = build_index(small_kb, tmp_path / "index", fake_embedder)
    assert report.articles == 4 and len(report.errors) == 1
    assert "broken.md" in str(report.errors[0])


def test_empty_folder_builds_nothing(tmp_path, fake_embedder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexBuildError, match="no valid article"):
        build_index(tmp_path / "empty", tmp_path / "index", fake_embedder)


def test_old_builds_are_pruned(small_kb, tmp_path, fake_embedder):
    index_dir = tmp_path / "index"
    versions = []
    for n in range(4):
        path = small_kb / "abschlag-anpassen.md"
        path.write_text(path.read_text("utf-8") + f"\nVersion {n}.\n", "utf-8")
        versions.append(build_index(small_kb, index_dir, fake_embedder, keep_builds=2).version)
    assert list_builds(index_dir) == versions[-2:]


def test_a_killed_builds_staging_folder_goes_with_the_next_build(small_kb, tmp_path,
                                                                  fake_embedder):
    index_dir = tmp_path / "index"
    build_index(small_kb, index_dir, fake_embedder)
    dead = index_dir / "builds" / ".staging-killed"  # as a build killed midway leaves it
    (dead / "keyword").mkdir(parents=True)
    (dead / "chunk_vectors.npy").write_bytes(b"half")
    build_index(small_kb, index_dir, fake_embedder)
    assert not dead.exists()
    assert not list((index_dir / "builds").glob(".staging-*"))


def test_ivf_above_the_exact_limit_keeps_its_centroids_and_lists(small_kb, tmp_path,
                                                                   fake_embedder):
    """Above the exact limit the dense index is IVF; a reindex keeps the centroids and the
    lists of kept chunks, assigns the new ones, and searches find what exact search finds."""
    index_dir = tmp_path / "index"
    report = build_index(small_kb, index_dir, fake_embedder, exact_limit=2)
    manifest = json.loads((report.path / "manifest.json").read_text())
    assert manifest["dense_index"] == "ivf" and manifest["dense"]["centroids"] == "trained"
    path = small_kb / "abschlag-anpassen.md"
    path.write_text(path.read_text("utf-8") + "\n## Winter\n\nNeuer Absatz im Winter.\n")
    second = build_index(small_kb, index_dir, fake_embedder, exact_limit=2)
    manifest = json.loads((second.path / "manifest.json").read_text())
    assert manifest["dense"]["centroids"] == "kept"
    centroids = np.load(second.path / "dense_centroids.npy")
    vectors = np.load(second.path / "chunk_vectors.npy")
    lists = np.load(second.path / "dense_lists.npy")
    assert lists.tolist() == np.argmax(vectors @ centroids.T, axis=1).tolist()
    loaded = open_index(index_dir)
    try:
        from kbsearch.index import dense

        for row in range(len(vectors)):
            found = dense.search(loaded.dense, loaded.chunk_vectors, vectors[row], 3)
            assert found.rows[0] == row or np.isclose(found.scores[0], 1.0)
    finally:
        loaded.close()


def test_open_without_index_is_a_clear_error(tmp_path):
    with pytest.raises(IndexNotFoundError, match="kbsearch index"):
        open_index(tmp_path / "none")


def test_reader_keeps_its_build_while_a_new_one_is_published(small_kb, tmp_path, fake_embedder):
    index_dir = tmp_path / "index"
    build_index(small_kb, index_dir, fake_embedder)
    reader = open_index(index_dir)
    shutil.copy(small_kb / "abschlag-anpassen.md", small_kb / "copy.md")
    (small_kb / "copy.md").write_text(
        (small_kb / "copy.md").read_text("utf-8").replace("id: abschlag-anpassen", "id: kopie"))
    build_index(small_kb, index_dir, fake_embedder)
    assert len(reader.articles) == 4
    assert reader.keyword.search("Abschlag", 10)[0]
    assert len(open_index(index_dir).articles) == 5


def test_running_service_switches_to_a_new_build(small_kb, tmp_path, fake_embedder, monkeypatch):
    from kbsearch import service as service_module
    from kbsearch.service import SearchService

    from .conftest import make_settings

    index_dir = tmp_path / "index"
    first = build_index(small_kb, index_dir, fake_embedder)
    service = SearchService(make_settings(tmp_path, index=index_dir), embedder=fake_embedder)
    assert service.index().version == first.version
    path = small_kb / "zaehlerstand-melden.md"
    path.write_text(path.read_text("utf-8") + "\nNeu: Zählerstand per Sprachassistent.\n")
    second = build_index(small_kb, index_dir, fake_embedder)
    monkeypatch.setattr(service_module, "RELOAD_CHECK_SECONDS", 0.0)
    assert service.index().version == second.version
    assert "Sprachassistent" in service.article("zaehlerstand-melden").body


def test_a_build_in_another_format_is_refused_with_the_command_that_rebuilds_it(
    small_kb, tmp_path, fake_embedder
):
    report = build_index(small_kb, tmp_path / "index", fake_embedder)
    manifest_path = report.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format"] = 2
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match=r"with format 2; .*run 'kbsearch index'"):
        open_index(tmp_path / "index")
    assert build_index(small_kb, tmp_path / "index", fake_embedder).version  # rebuilding works
    assert len(open_index(tmp_path / "index").articles) == 4


def test_the_keyword_index_opens_without_unpickling_kbsearch_classes(
    small_kb, tmp_path, fake_embedder, monkeypatch
):
    from kbsearch.content import analysis

    report = build_index(small_kb, tmp_path / "index", fake_embedder)
    # as if the analyzer's module had moved since the build was written
    monkeypatch.delattr(analysis, "KbAnalyzer")
    reader = open_index(tmp_path / "index")
    assert reader.keyword.search("Zählerstand", 10)[0][0] == "zaehlerstand-melden"
    assert (report.path / "keyword" / "lexicon.txt").read_text("utf-8").split()


def test_an_unchanged_article_is_not_cut_into_chunks_again(small_kb, tmp_path, fake_embedder):
    """A rebuild takes the chunks of unchanged articles from the current build (no token
    counting); a changed chunk budget cuts every article again, into the same chunks."""
    index_dir = tmp_path / "index"
    first = build_index(small_kb, index_dir, fake_embedder)
    counted: list[str] = []

    class Counting(CountingEmbedder):
        def count_tokens(self, text):
            counted.append(text)
            return super().count_tokens(text)

    path = small_kb / "abschlag-anpassen.md"
    path.write_text(path.read_text("utf-8") + "\nNeuer Absatz über Abschläge im Winter.\n")
    second = build_index(small_kb, index_dir, Counting(fake_embedder))
    assert counted and all("Abschlag" in text or "Abschläge" in text for text in counted)
    assert second.chunks >= first.chunks
    counted.clear()
    third = build_index(small_kb, index_dir, Counting(fake_embedder), chunk_tokens=255)
    assert {text.split("\n")[0] for text in counted} >= {"Wie melde ich meinen Zählerstand?"}
    rows = [json.loads(line) for line in (second.path / "chunks.jsonl").read_text().splitlines()]
    again = [json.loads(line) for line in (third.path / "chunks.jsonl").read_text().splitlines()]
    assert [r["text"] for r in again] == [r["text"] for r in rows]


def test_a_rebuild_parses_only_new_changed_or_moved_files(
    small_kb, tmp_path, fake_embedder, monkeypatch
):
    """Unchanged files are taken from the current build, parsed no more; a changed or
    moved file is parsed, and a language no longer configured still fails its article."""
    from kbsearch.content import articles as articles_module

    index_dir = tmp_path / "index"
    build_index(small_kb, index_dir, fake_embedder)
    parsed: list[str] = []
    real_parse = articles_module.parse_article

    def counting_parse(path, raw, languages=("de", "en"), relative_to=None):
        parsed.append(path.name)
        return real_parse(path, raw, languages, relative_to)

    monkeypatch.setattr(articles_module, "parse_article", counting_parse)
    path = small_kb / "abschlag-anpassen.md"
    path.write_text(path.read_text("utf-8") + "\nNeuer Absatz.\n")
    (small_kb / "telekom").mkdir()
    (small_kb / "router-stoerung-en.md").rename(small_kb / "telekom" / "router-stoerung-en.md")
    report = build_index(small_kb, index_dir, fake_embedder)
    assert sorted(parsed) == ["abschlag-anpassen.md", "router-stoerung-en.md"]
    assert report.changed == ("abschlag-anpassen",)  # moved, its content is unchanged
    reader = open_index(index_dir)
    moved = next(a for a in reader.articles if a.id == "router-stoerung-en")
    assert moved.path == "telekom/router-stoerung-en.md"
    parsed.clear()
    report = build_index(small_kb, index_dir, fake_embedder, languages=("de",))
    assert parsed == ["router-stoerung-en.md"]
    assert [str(e.path) for e in report.errors] == ["telekom/router-stoerung-en.md"]



def test_an_incremental_build_equals_a_fresh_one_record_for_record(small_kb, tmp_path,
                                                                     fake_embedder):
    """Kept chunks (their records copied as lines, their vectors as rows) and new ones
    make the same chunks.jsonl and vectors as a build from scratch."""
    index_dir = tmp_path / "index"
    build_index(small_kb, index_dir, fake_embedder)
    path = small_kb / "abschlag-anpassen.md"
    path.write_text(path.read_text("utf-8") + "\n## Winter\n\nNeuer Absatz im Winter.\n")
    (small_kb / "router-stoerung-en.md").unlink()
    updated = build_index(small_kb, index_dir, fake_embedder)
    assert updated.reused > 0 and updated.embedded > 0
    fresh = build_index(small_kb, tmp_path / "fresh", fake_embedder)
    for name in ("chunks.jsonl", "articles.jsonl"):
        assert (updated.path / name).read_bytes() == (fresh.path / name).read_bytes()
    np.testing.assert_array_equal(np.load(updated.path / "chunk_vectors.npy"),
                                  np.load(fresh.path / "chunk_vectors.npy"))


@pytest.mark.parametrize("heading", [
    "Plain", 'Quoted "text_key": "x" heading', 'Backslash \\ and "quotes"', "Ümläut ✓",
])
def test_a_chunk_line_gives_its_article_and_text_key_without_decoding(heading):
    from kbsearch.index.previous import chunk_line_keys, text_key

    record = {"article_id": "a-1", "ordinal": 0, "heading": heading,
              "text_key": text_key("body"), "text": f'{heading} "text_key": "body'}
    line = json.dumps(record, ensure_ascii=False) + "\n"
    assert chunk_line_keys(line) == ("a-1", text_key("body"))
    reordered = json.dumps({"text_key": text_key("x"), "article_id": "b"})  # another shape
    assert chunk_line_keys(reordered) == ("b", text_key("x"))


def test_kept_chunk_blocks_leave_out_an_article_whose_rows_are_split():
    from kbsearch.index.previous import KeptChunks, _blocks

    blocks = _blocks(["a", "a", "b", "c", "c", "c", "b"], {"a": "h1", "c": "h3"})
    assert blocks == {"a": ("h1", KeptChunks(0, 2)), "c": ("h3", KeptChunks(3, 6))}
    assert _blocks([], {}) == {}


def test_an_opened_build_reads_article_texts_from_disk_when_asked(small_kb, tmp_path,
                                                                   fake_embedder):
    from kbsearch.content.articles import load_articles

    index_dir = tmp_path / "index"
    build_index(small_kb, index_dir, fake_embedder)
    loaded = open_index(index_dir)
    try:
        assert all(a.body == "" for a in loaded.articles)  # metadata only in memory
        expected = {a.id: a for a in load_articles(small_kb).articles}
        for position, meta in enumerate(loaded.articles):
            full = loaded.article(position)
            assert full == expected[meta.id]
        shutil.rmtree(loaded.path)  # pruned while a worker still searches it
        assert loaded.article(0).body == expected[loaded.articles[0].id].body
    finally:
        loaded.close()
    with pytest.raises(ValueError):
        loaded.article(0)


def test_article_texts_are_found_across_blank_lines(tmp_path):
    from kbsearch.content.articles import Article
    from kbsearch.index.bodies import read_articles

    texts = ["# Eins\n\nÄrger mit dem Zähler.\n", "Zwei \"zitiert\"\n", "drei"]
    lines = [json.dumps({**Article(id=f"a{i}", title=f"T{i}", language="de", category="c",
                                   body=t).to_metadata(), "body": t}, ensure_ascii=False)
             for i, t in enumerate(texts)]
    path = tmp_path / "articles.jsonl"
    path.write_text("\n" + lines[0] + "\n\n\n" + lines[1] + "\n" + lines[2], "utf-8")
    articles, bodies = read_articles(path)
    assert [a.id for a in articles] == ["a0", "a1", "a2"]
    assert [bodies.body(p) for p in (2, 0, 1)] == [texts[2], texts[0], texts[1]]
    bodies.close()
