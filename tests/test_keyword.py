"""The keyword index's one-pass search gives the scores of Whoosh's own searches."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from whoosh.query import Or, Query, Term

from kbsearch.index.builds import open_index
from kbsearch.index.keyword import FIELD_BOOSTS, FIELDS, KeywordIndex

# queries whose synonym groups have at most one term in any one field of the sample index
QUERIES = [
    "Wie melde ich meinen Zählerstand?", "Router blinkt rot", "Rechnung zu hoch",
    "How do I submit my meter reading?", "Vertrag kündigen Strom", "pay by bank transfer",
    "eSIM aktivieren", "Internet geht nicht", "Passwort vergessen", "Guthaben auszahlen",
]


def whoosh_scores(keyword: KeywordIndex, query: str, fields: tuple[str, ...]) -> dict[str, float]:
    """Score a query with a Whoosh search: an Or of each term group's term in each field.

    Each group must have at most one term in any one field (so that Whoosh's DisMax of
    the group, which the search used to run, scores as that one term).
    """
    searcher = keyword._searcher
    reader = searcher.reader()
    parts: list[Query] = []
    for lang, groups in keyword.terms(query, ("de", "en")).items():
        for group in groups:
            for name in fields:
                present = [t for t in group if (f"{name}_{lang}", t) in reader]
                assert len(present) <= 1, (query, name, group)
                parts += [Term(f"{name}_{lang}", t, boost=FIELD_BOOSTS[name]) for t in present]
    return {keyword._ids[hit.docnum]: hit.score
            for hit in searcher.search(Or(parts), limit=None)}


@pytest.mark.parametrize("query", QUERIES)
def test_one_pass_gives_the_scores_and_order_of_whoosh_searches(sample_index, query):
    keyword = open_index(sample_index).keyword
    ids, scores = keyword.search(query, 100)
    total = whoosh_scores(keyword, query, FIELDS)
    assert ids == sorted(total, key=lambda a: (-total[a], keyword._docnums[a]))
    title = whoosh_scores(keyword, query, ("title",))
    body = whoosh_scores(keyword, query, ("body",))
    for article_id in ids:
        assert scores[article_id].total == total[article_id]  # to the last bit
        assert scores[article_id].title == title.get(article_id, 0.0)
        assert scores[article_id].body == body.get(article_id, 0.0)
    assert keyword.search(query, 3)[0] == ids[:3]


def test_coverage_is_the_share_of_query_terms_an_article_contains(sample_index):
    keyword = open_index(sample_index).keyword
    # German groups: zählerstand (and its synonyms), zähl, stand (its parts), xyzzyquux
    ids, scores = keyword.search("Zählerstand xyzzyquux", 10, languages=("de",))
    assert len(keyword.terms("Zählerstand xyzzyquux", ("de",))["de"]) == 4
    assert scores["zaehlerstand-melden"].coverage == 0.75
    # the best language counts: English has two groups, zaehlerstand and xyzzyquux
    ids, scores = keyword.search("Zählerstand xyzzyquux", 10)
    assert scores["zaehlerstand-melden"].coverage == 0.75
    ids, scores = keyword.search("Router xyzzyquux", 10, languages=("en",))
    assert all(scores[a].coverage == 0.5 for a in ids)


def test_a_synonym_group_scores_its_best_term_in_that_article(sample_index):
    keyword = open_index(sample_index).keyword
    query = "teuer"  # a synonym group: preis, teuer, teurer, ... (articles/synonyms.txt)
    groups = keyword.terms(query, ("de",))["de"]
    assert len(groups) == 1 and len(groups[0]) > 1
    ids, scores = keyword.search(query, 100, languages=("de",))
    assert ids
    searcher = keyword._searcher
    for article_id in ids:
        expected = 0.0
        for name in FIELDS:
            per_term = [{keyword._ids[h.docnum]: h.score for h in searcher.search(
                Term(f"{name}_de", term, boost=FIELD_BOOSTS[name]), limit=None)}
                .get(article_id, 0.0) for term in groups[0]]
            expected += max(per_term)
        assert scores[article_id].total == pytest.approx(expected, rel=1e-12)


def test_a_term_missing_from_the_index_is_kept_as_no_postings_and_counts_once(
        sample_index, monkeypatch):
    from kbsearch.index import keyword as keyword_module

    keyword = open_index(sample_index).keyword
    assert keyword.search("xyzzyquux", 10, languages=("de",)) == ([], {})
    missing = {key: postings for key, postings in keyword._cache.items()
               if key[1] == b"xyzzyquux"}
    assert set(missing) == {(f"{name}_de", b"xyzzyquux") for name in FIELDS}
    assert all(len(docnums) == 0 for docnums, _ in missing.values())
    assert keyword._cached == len(keyword._cache)
    monkeypatch.setattr(keyword_module, "POSTINGS_CACHE", 5)
    for word in ("quuxa", "quuxb", "quuxc"):
        keyword.search(word, 10, languages=("de",))
    assert len(keyword._cache) == keyword._cached <= 5


def test_cached_postings_are_not_walked_by_a_full_garbage_collection(sample_index):
    # tens of thousands of cached postings in a server: as objects the collector tracks,
    # each full collection walked them all (25-30 ms at 10k articles); as tuples of arrays
    # the collector stops tracking them after its first pass over them
    keyword = open_index(sample_index).keyword
    for query in QUERIES:
        keyword.search(query, 10, languages=("de", "en"))
    assert len(keyword._cache) > 50
    gc.collect()
    tracked = [key for key, postings in keyword._cache.items() if gc.is_tracked(postings)]
    assert tracked == []
    assert not any(gc.is_tracked(key) for key in keyword._cache)


def test_a_filtered_search_returns_only_the_allowed_documents(sample_index):
    loaded = open_index(sample_index)
    keyword = loaded.keyword
    query = "Vertrag kündigen Zähler Strom Router Rechnung"
    ids, scores = keyword.search(query, 100)
    allowed = ids[1::3]
    docnums = keyword.docnums_of([*allowed, "no-such-article"])
    assert docnums[-1] == -1  # an id the index does not have
    filtered, filtered_scores = keyword.search(query, 100, docnums)
    assert filtered == allowed  # the same order, the others left out
    assert all(filtered_scores[a] == scores[a] for a in filtered)
    assert keyword.search(query, 100, keyword.docnums_of(["no-such-article"])) == ([], {})
    # the build maps each article position to its document number once
    assert [keyword._ids[n] for n in loaded.keyword_docnums] == [a.id for a in loaded.articles]


@pytest.mark.parametrize("limit", [0, 1, 2, 3, 4, 6, 10])
def test_the_top_rows_are_the_best_totals_with_ties_in_index_order(limit):
    from kbsearch.index.keyword import _Matches, _top

    matches = _Matches(np.array([2, 5, 7, 9, 11, 12, 20]))
    matches.total[:] = [1.0, 3.0, 2.0, 3.0, 0.5, 3.0, 2.0]
    rows = np.array([0, 1, 2, 3, 5, 6])  # row 4 is not allowed
    expected = sorted(rows.tolist(), key=lambda r: (-matches.total[r], matches.docnums[r]))
    assert _top(rows, matches, limit).tolist() == expected[:limit]
