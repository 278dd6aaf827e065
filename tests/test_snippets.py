"""Snippets from the precomputed sentence index choose what the sentence-by-sentence rule did."""

from __future__ import annotations

import dataclasses
import gc
import random
import weakref

from kbsearch.content.articles import load_articles
from kbsearch.content.snippets import (
    SENTENCE_END,
    _sentence_parts,
    _sentences,
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


def test_sentence_scores_count_what_shared_terms_counts():
    rng = random.Random(11)
    words = ["Zähler", "zaehlerstand", "Straße", "strasse", "_x", "x_", "a1", "1a", "Größe",
             "GRÖSSE", "don’t", "e-mail", "mail", "Stromzähler", "über", "ueberweisung"]
    separators = [" ", ". ", "! ", "\n", ", ", "-", "’", "(", "_", ":\n\n"]
    for _ in range(400):
        text = "".join(rng.choice(words) + rng.choice(separators)
                       for _ in range(rng.randint(1, 25)))
        query = " ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
        prefixes = match_prefixes(query) + ["zähl", "don’", "ail", "x_"]
        index = _sentences(text)
        assert index.scores(prefixes) == [shared_terms(s, prefixes) for s in index.sentences], (
            text, prefixes)


def test_a_prefix_is_found_only_at_a_word_beginning():
    index = _sentences("Netzstrom fällt aus. Strom fällt aus. Die Stromrechnung!")
    assert index.scores(["stro"]) == [0, 1, 1]
    assert index.scores(["stro", "faell"]) == [1, 2, 1]
    assert index.scores(["fällt", "str-"]) == [0, 0, 0]  # never folded, or not a word


def test_the_snippet_caches_keep_no_article_and_nothing_the_collector_walks():
    # a long-running server shows thousands of articles: what the caches keep of them
    # must not be objects that every full garbage collection walks
    article = dataclasses.replace(load_articles(ARTICLES).articles[0], id="copy-for-gc-test",
                                  body="Erster Satz hier. Zweiter Satz über Zählerstände.")
    snippet = article_snippet(article, "Zählerstände melden")
    assert snippet == "Zweiter Satz über Zählerstände."
    alive = weakref.ref(article)
    del article
    gc.collect()
    assert alive() is None  # not kept as a cache key
    parts = _sentence_parts("Erster Satz hier. Zweiter Satz über Zählerstände.")
    gc.collect()
    assert _sentence_parts("Erster Satz hier. Zweiter Satz über Zählerstände.") is parts
    assert type(parts) is tuple and not gc.is_tracked(parts)
    assert _sentences("Erster Satz hier. Zweiter Satz über Zählerstände.").sentences == parts[0]
