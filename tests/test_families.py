"""One result per translation family: an article and its translation never share a list."""

from __future__ import annotations

import shutil

import pytest

from kbsearch.content.articles import family
from kbsearch.content.visibility import Caller
from kbsearch.ranking.families import one_per_family
from kbsearch.ranking.scoring import Hit


def hits(*ids: str) -> list[Hit]:
    return [Hit(i, 1.0 - n / 10) for n, i in enumerate(ids)]


def test_the_preferred_language_is_kept_else_the_best_member() -> None:
    found = hits("a-en", "b", "a", "c-en", "c-fr")
    families = ["a", "b", "a", "c", "c"]
    languages = ["en", "de", "de", "en", "fr"]
    kept = one_per_family(found, families, languages, lambda: "de")
    assert [h.id for h in kept] == ["b", "a", "c-en"]  # c has no German member: its best
    assert kept[1].probability == pytest.approx(0.8)  # its own probability, not a-en's
    kept = one_per_family(found, families, languages, lambda: "en")
    assert [h.id for h in kept] == ["a-en", "b", "c-en"]


def test_the_language_is_asked_for_only_where_a_family_repeats() -> None:
    asked: list[int] = []

    def preferred() -> str:
        asked.append(1)
        return "de"

    found = hits("a", "b", "c")
    assert one_per_family(found, ["a", "b", "c"], ["de", "de", "en"], preferred) == found
    assert asked == []
    assert one_per_family([], [], [], preferred) == [] and asked == []


@pytest.mark.parametrize(("query", "kept", "left_out"), [
    ("mein internet ist weg, der router blinkt", "router-stoerung", "router-stoerung-en"),
    ("my internet is down and the router is blinking", "router-stoerung-en",
     "router-stoerung"),
])
def test_a_search_keeps_the_article_in_the_querys_language(sample_service, query: str,
                                                           kept: str, left_out: str) -> None:
    response = sample_service.search(query, k=10, log=False)
    ids = [r.article.id for r in response.results]
    assert kept in ids and left_out not in ids
    families = [family(r.article) for r in response.results]
    assert len(families) == len(set(families))
    result = next(r for r in response.results if r.article.id == kept)
    assert [t.id for t in result.translations] == [left_out]
    link = next(r for r in response.to_json()["results"] if r["id"] == kept)["translations"]
    assert link == [{"id": left_out, "title": result.translations[0].title,
                     "language": result.translations[0].language,
                     "url": f"/articles/{left_out}"}]


def test_the_requested_language_decides_and_fills_the_list(sample_service) -> None:
    """With lang=en only English articles are searched: k results, none repeated; and a
    search for everything still returns k results after families are merged."""
    response = sample_service.search("Router Internet Störung", k=10, language="en", log=False)
    assert all(r.article.language == "en" for r in response.results)
    assert len(sample_service.search("Vertrag Rechnung Zähler Router", k=10, log=False)
               .results) == 10


def test_an_internal_translation_is_linked_only_for_agents(tmp_path, fake_embedder) -> None:
    """A translation the caller may not see is neither shown nor linked: the public get
    the German router article alone, agents see it with its internal English version."""
    from kbsearch.index.builds import build_index

    from .conftest import ARTICLES, service_over

    kb = tmp_path / "kb"
    kb.mkdir()
    shutil.copy(ARTICLES / "telekom" / "router-stoerung.md", kb)
    shutil.copy(ARTICLES / "energie" / "zaehlerstand-melden.md", kb)
    english = (ARTICLES / "telekom" / "router-stoerung-en.md").read_text("utf-8")
    (kb / "router-stoerung-en.md").write_text(
        english.replace("audience: public", "audience: internal"), "utf-8")
    build_index(kb, tmp_path / "index", fake_embedder)
    service = service_over(tmp_path / "service", tmp_path / "index", fake_embedder)
    for caller, linked in ((None, []), (Caller(role="agent"), ["router-stoerung-en"])):
        response = service.search("Internet geht nicht, Router blinkt", k=10, log=False,
                                  caller=caller)
        ids = [r.article.id for r in response.results]
        assert ids[0] == "router-stoerung" and "router-stoerung-en" not in ids
        assert [t.id for t in response.results[0].translations] == linked


def test_an_unclear_query_language_keeps_the_most_probable_member(sample_service) -> None:
    """"Router blinkt" reads as English at 0.52: too unclear to decide, so the family's
    most probable article is kept (the German one here), not the English twin."""
    from kbsearch.content.analysis import confident_language

    assert confident_language("Router blinkt") is None
    assert confident_language("mein internet ist weg") == "de"
    assert confident_language("Zählerstand") == "de"  # umlauts decide
    assert confident_language("my internet is down") == "en"
    ranked = sample_service.search("Router blinkt", k=10, log=False).results
    ids = [r.article.id for r in ranked]
    assert ("router-stoerung" in ids) != ("router-stoerung-en" in ids)
