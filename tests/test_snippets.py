"""Snippets from the precomputed sentence index choose what the sentence-by-sentence rule did."""

from __future__ import annotations

from kbsearch.content.articles import load_articles
from kbsearch.content.snippets import (
    SENTENCE_END,
    article_snippet,
    article_text,
    make_snippet,
    match_prefixes,
    shared_terms,
    shorten,
)

from .conftest import ARTICLES

QUERIES = [
    "Wie melde ich meinen Zählerstand?", "Zählerstände", "Router blinkt rot", "Abschlag ändern",
    "How do I submit my meter reading?", "Rechnung zu hoch", "Kündigung Strom", "xyzzy",
    "pay by bank transfer", "eSIM aktivieren", "Strom Strom Gas", "", "Umzug melden Strom",
]


def reference_snippet(text: str, query: str, fallback: str, length: int = 240) -> str:
    """The rule as written before: score each sentence with shared_terms, keep the first best."""
    prefixes = match_prefixes(query)
    sentences = [s for s in (p.strip() for p in SENTENCE_END.split(text)) if s]
    best, best_score = "", 0
    for sentence in sentences:
        score = shared_terms(sentence, prefixes)
        if score > best_score:
            best, best_score = sentence, score
    if not best:
        best = fallback or (sentences[0] if sentences else "")
    return shorten(" ".join(best.split()), length)


def test_every_sample_article_gets_the_snippet_of_the_sentence_rule():
    articles = load_articles(ARTICLES).articles
    assert len(articles) > 50
    queries = QUERIES + [a.title for a in articles[::3]]
    checked = 0
    for article in articles:
        body = article_text(article)
        first = body.split("\n\n", 1)[0] if body else ""
        for query in queries:
            assert article_snippet(article, query) == reference_snippet(body, query, first), (
                article.id, query)
            checked += 1
    assert checked > 1000


def test_ties_keep_the_first_sentence():
    text = "Strom sparen. Gas sparen. Strom und Gas sparen. Nichts."
    assert make_snippet(text, "sparen") == "Strom sparen."
    assert make_snippet(text, "Gas Strom") == "Strom und Gas sparen."
    assert make_snippet("Gas hier. Strom dort.", "Strom Strom Gas") == reference_snippet(
        "Gas hier. Strom dort.", "Strom Strom Gas", "")
    assert make_snippet(text, "xyzzy") == "Strom sparen."
    assert make_snippet("", "Strom", fallback="Anfang") == "Anfang"
