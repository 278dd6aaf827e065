"""Editors' questions: the front matter field, their vectors in a build, and their match."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kbsearch.content.articles import Article, parse_article
from kbsearch.errors import ArticleError
from kbsearch.index.builds import build_index, open_index
from kbsearch.ranking.memory import match_editor_questions

from .conftest import ARTICLES, service_over

ARTICLE = """---
id: umzug-melden
title: Umzug – wie nehme ich Strom und Gas mit?
language: de
category: umzug
questions:
  - Wir ziehen um – was passiert mit dem Vertrag?
  - "  Neue   Adresse melden "
  - Wir ziehen um – was passiert mit dem Vertrag?
---
# Umzug

Melden Sie den Umzug eine Woche vorher.
"""


def parse(text: str, name: str = "kb/a.md") -> Article:
    return parse_article(Path(name), text.encode("utf-8"))


def test_questions_are_read_tidied_and_kept_once():
    article = parse(ARTICLE)
    assert article.questions == ("Wir ziehen um – was passiert mit dem Vertrag?",
                                 "Neue Adresse melden")
    meta = article.to_metadata()
    assert meta["questions"] == list(article.questions)
    assert Article.from_metadata(meta, article.body) == article


def test_questions_are_optional():
    assert parse(ARTICLE.split("questions:")[0] + "---\n# Umzug\n\nText.\n").questions == ()


@pytest.mark.parametrize(
    ("questions", "line", "words"),
    [
        ("questions: Neue Adresse melden\n", 6, "must be a list of questions"),
        ("questions: {a: 1}\n", 6, "must be a list of questions"),
        ("questions:\n  - Neue Adresse\n  - 2026\n", 8, "question 2 is not text: 2026"),
        ("questions:\n  - Neue Adresse\n  - ''\n", 8, "question 2 is empty"),
        ("questions: ['Neue Adresse', '   ']\n", 6, "question 2 is empty"),
        ("questions:\n  - " + "x" * 301 + "\n", 7, "question 1 is longer than 300"),
        ("questions: [" + ", ".join(f"q{i}" for i in range(31)) + "]\n", 6,
         "31 questions; at most 30"),
    ],
)
def test_bad_questions_name_the_file_line_and_field(questions, line, words):
    text = ARTICLE.split("questions:")[0] + questions + "---\n# Umzug\n\nText.\n"
    with pytest.raises(ArticleError) as info:
        parse(text)
    assert str(info.value).startswith(f"kb/a.md:{line}: field 'questions':")
    assert words in str(info.value)


def test_an_article_keeps_its_best_question_match_and_weak_matches_count_nothing():
    similarity = np.array([0.95, 0.99, 0.89, 0.92, 0.90])
    owners = np.array([0, 0, 1, 2, 3])
    evidence = match_editor_questions(similarity, owners, 0.9)
    assert evidence == pytest.approx({0: 0.9, 2: 0.2})  # best of two, not their sum


class QueryCounter:
    """Wraps an embedder and records the texts it embeds as queries."""

    def __init__(self, inner):
        self.inner = inner
        self.queries: list[str] = []
        for name in ("name", "dimension", "max_tokens", "query_prompt", "passage_prompt"):
            setattr(self, name, getattr(inner, name))

    def count_tokens(self, text):
        return self.inner.count_tokens(text)

    def embed_passages(self, texts, progress=False):
        return self.inner.embed_passages(texts)

    def embed_queries(self, texts):
        self.queries.extend(texts)
        return self.inner.embed_queries(texts)


def _kb(tmp_path: Path) -> Path:
    folder = tmp_path / "articles"
    folder.mkdir()
    for name in ("energie/umzug-melden.md", "energie/zaehlerstand-melden.md",
                 "telekom/router-stoerung.md"):
        shutil.copy(ARTICLES / name, folder / Path(name).name)
    return folder


def _set_questions(path: Path, questions: list[str]) -> None:
    text = path.read_text("utf-8")
    head, _, rest = text[4:].partition("\n---\n")
    lines = [line for line in head.split("\n")
             if not line.startswith(("questions:", "  - "))]
    lines += ["questions:", *(f"  - {json.dumps(q, ensure_ascii=False)}" for q in questions)]
    path.write_text("---\n" + "\n".join(lines) + "\n---\n" + rest, "utf-8")


def test_a_build_embeds_questions_as_queries_and_reuses_unchanged_ones(tmp_path, fake_embedder):
    kb = _kb(tmp_path)
    _set_questions(kb / "umzug-melden.md", ["Wohnortwechsel anzeigen", "Adresse ändern"])
    _set_questions(kb / "router-stoerung.md", ["Lämpchen leuchtet rot"])
    _set_questions(kb / "zaehlerstand-melden.md", [])
    index_dir = tmp_path / "index"
    counter = QueryCounter(fake_embedder)
    first = build_index(kb, index_dir, counter)
    assert first.questions == 3
    assert set(counter.queries) >= {"Wohnortwechsel anzeigen", "Adresse ändern",
                                    "Lämpchen leuchtet rot"}
    loaded = open_index(index_dir)
    assert loaded.question_vectors.shape == (3, fake_embedder.dimension)
    owners = [loaded.articles[p].id for p in loaded.question_article]
    assert owners == ["router-stoerung", "umzug-melden", "umzug-melden"]
    row = owners.index("umzug-melden") + 1  # "Adresse ändern", embedded as a query
    expected = fake_embedder.embed_queries(["Adresse ändern"])[0]
    assert np.allclose(loaded.question_vectors[row], expected, atol=1e-6)
    manifest = json.loads((first.path / "manifest.json").read_text("utf-8"))
    assert (manifest["format"], manifest["questions"]) == (4, 3)

    _set_questions(kb / "umzug-melden.md", ["Wohnortwechsel anzeigen", "Neue Anschrift"])
    counter = QueryCounter(fake_embedder)
    second = build_index(kb, index_dir, counter)
    assert counter.queries == ["Neue Anschrift"] and second.embedded == 0
    assert second.changed == ("umzug-melden",)


def test_a_matching_question_brings_its_article_first_and_others_get_nothing(
    tmp_path, fake_embedder
):
    kb = _kb(tmp_path)
    question = "Formular für den Wohnortwechsel gesucht"
    _set_questions(kb / "umzug-melden.md", [question])
    build_index(kb, tmp_path / "index", fake_embedder)
    service = service_over(tmp_path, tmp_path / "index", fake_embedder)
    hits = service.search(question, log=False).results
    assert hits[0].article.id == "umzug-melden"
    assert hits[0].hit.scores["question_sim"] == pytest.approx(1.0, abs=1e-4)
    assert all(h.hit.scores["question_sim"] == 0 for h in hits[1:])
    other = service.search("Router blinkt rot", log=False).results
    assert all(h.hit.scores["question_sim"] == 0 for h in other)


def test_the_article_api_shows_the_questions(client):
    body = client.get("/api/v1/articles/umzug-melden").get_json()
    assert body["questions"] and all(isinstance(q, str) for q in body["questions"])


def test_bundled_questions_are_not_copies_of_judged_queries():
    from kbsearch.content.analysis import fold
    from kbsearch.content.articles import load_articles

    judged = {fold(line.split("\t")[0]).strip(" ?.!")
              for line in (ARTICLES / "judgments.tsv").read_text("utf-8").splitlines()
              if line.strip() and not line.startswith("#")}
    questions = [q for a in load_articles(ARTICLES).articles for q in a.questions]
    assert len(questions) >= 30
    assert not {fold(q).strip(" ?.!") for q in questions} & judged


@pytest.mark.parametrize(
    ("query", "article_id"),
    [
        ("ich ziehe um", "umzug-melden"),  # 8th, probability 0.002, before issue 12
        ("Strom zu teuer", "tarifwechsel"),  # 5th, 0.09
        # a question of neukunde-lieferbeginn matches at 0.93 and must not take over
        ("Stromvertrag kündigen", "kuendigung-energie"),
    ],
)
def test_everyday_phrasings_find_their_article_first(model_service, query, article_id):
    results = model_service.search(query, log=False).results
    assert results[0].article.id == article_id
