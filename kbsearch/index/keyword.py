"""The keyword index: Whoosh BM25F over title, tags and body, one field set per language."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from whoosh import index as whoosh_index
from whoosh import scoring
from whoosh.collectors import FilterCollector
from whoosh.fields import ID, TEXT, Schema
from whoosh.query import DisjunctionMax, Or, Query, Term
from whoosh.searching import Results

from kbsearch.content.analysis import LANGUAGES, KbAnalyzer, Lexicon, query_term_groups
from kbsearch.content.articles import Article
from kbsearch.content.chunking import plain_text
from kbsearch.content.synonyms import NO_RULES, SYNONYMS_FILE, Synonyms, load_synonyms
from kbsearch.errors import SearchTimeoutError
from kbsearch.index.deadline import Deadline, DeadlineCollector

FIELDS = ("title", "tags", "body")
FIELD_BOOSTS = {"title": 2.0, "tags": 1.5, "body": 1.0}
BM25_K1 = 0.9
BM25_B = 0.4
LEXICON_FILE = "lexicon.txt"


@dataclass(frozen=True)
class KeywordScores:
    """BM25 scores of one article for one query: all fields, title only, body only."""

    total: float
    title: float
    body: float
    coverage: float


def make_schema(lexicon: Lexicon, synonyms: Synonyms = NO_RULES) -> Schema:
    """Return the Whoosh schema: an id, and title/tags/body per language with its analyzer."""
    fields: dict[str, object] = {"id": ID(stored=True, unique=True)}
    for language in LANGUAGES:
        analyzer = KbAnalyzer(language, lexicon if language == "de" else Lexicon(frozenset()),
                              synonyms.for_language(language))
        for name in FIELDS:
            fields[f"{name}_{language}"] = TEXT(analyzer=analyzer, phrase=False)
    return Schema(**fields)


def build_keyword_index(
    folder: Path, articles: Iterable[Article], lexicon: Lexicon, synonyms: Synonyms = NO_RULES
) -> None:
    """Write a fresh Whoosh index of the articles into an empty folder.

    The lexicon is written beside it as plain text, one word a line, and the synonyms file
    as it was read: opening the index rebuilds the schema from them (so queries are
    analysed as the articles were, and no kbsearch class is ever unpickled from a build).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LEXICON_FILE).write_text("".join(f"{w}\n" for w in sorted(lexicon.words)), "utf-8")
    (folder / SYNONYMS_FILE).write_text(synonyms.text, "utf-8")
    ix = whoosh_index.create_in(str(folder), make_schema(lexicon, synonyms))
    writer = ix.writer(limitmb=128)
    for article in articles:
        lang = article.language
        writer.add_document(
            id=article.id,
            **{
                f"title_{lang}": article.title,
                f"tags_{lang}": " ".join(article.tags),
                f"body_{lang}": plain_text(article.body),
            },
        )
    writer.commit()


class KeywordIndex:
    """A read-only Whoosh index with BM25F search by article id."""

    def __init__(self, folder: Path) -> None:
        """Open the index in ``folder``; queries use the lexicon it was built with.

        The schema is made here from the stored lexicon and handed to Whoosh, which then
        skips the schema it pickled at build time (whose analyzer names a module path).
        """
        words = (folder / LEXICON_FILE).read_text("utf-8").split()
        self._lexicon = Lexicon(frozenset(words))
        synonyms = load_synonyms(folder / SYNONYMS_FILE)
        self._synonyms = {lang: synonyms.for_language(lang) for lang in LANGUAGES}
        self._ix = whoosh_index.open_dir(str(folder), readonly=True,
                                         schema=make_schema(self._lexicon, synonyms))
        self._weighting = scoring.BM25F(B=BM25_B, K1=BM25_K1)
        self._searcher = self._ix.searcher(weighting=self._weighting)
        self._lock = threading.Lock()
        self._ids: list[str] = [""] * self._searcher.doc_count_all()
        for docnum, stored in self._searcher.reader().iter_docs():
            self._ids[docnum] = stored["id"]
        self._docnums = {article_id: n for n, article_id in enumerate(self._ids) if article_id}

    def close(self) -> None:
        """Release the searcher's files."""
        self._searcher.close()

    def terms(self, query: str, languages: Sequence[str]) -> dict[str, list[tuple[str, ...]]]:
        """Return the analysed query terms per language, a word's synonyms in one group."""
        return {lang: query_term_groups(query, lang, self._lexicon, self._synonyms[lang])
                for lang in languages}

    def _query(self, terms: dict[str, list[tuple[str, ...]]], fields: Sequence[str]) -> Or:
        """Return the OR of every term in every field; a synonym group scores its best term."""
        parts: list[Query] = []
        for lang, groups in terms.items():
            for group in groups:
                for name in fields:
                    field, boost = f"{name}_{lang}", FIELD_BOOSTS[name]
                    alternatives = [Term(field, term, boost=boost) for term in group]
                    parts.append(alternatives[0] if len(alternatives) == 1
                                 else DisjunctionMax(alternatives))
        return Or(parts)

    def search(
        self,
        query: str,
        limit: int,
        allowed: set[str] | None = None,
        languages: Sequence[str] = LANGUAGES,
        deadline: Deadline | None = None,
    ) -> tuple[list[str], dict[str, KeywordScores]]:
        """Return the top article ids by BM25F, and field scores and term coverage for them.

        With a ``deadline``, raise SearchTimeoutError when it passes, also while waiting
        for another search to finish with the searcher or between two matched documents.
        """
        terms = self.terms(query, languages)
        if not any(terms.values()):
            return [], {}
        allow = None
        if allowed is not None:
            allow = {self._docnums[a] for a in allowed if a in self._docnums}
            if not allow:
                return [], {}
        if not self._lock.acquire(timeout=deadline.remaining() if deadline else -1):
            raise SearchTimeoutError("keyword", deadline.limit if deadline else 0.0)
        try:
            results = self._run(self._query(terms, FIELDS), limit, allow, deadline)
            ranked = [(hit.docnum, hit.score) for hit in results]
            if not ranked:
                return [], {}
            found = {docnum for docnum, _ in ranked}
            title = self._field_scores(terms, ("title",), found, deadline)
            body = self._field_scores(terms, ("body",), found, deadline)
            coverage = self._coverage(terms, found)
        finally:
            self._lock.release()
        scores = {
            self._ids[docnum]: KeywordScores(
                total=float(score),
                title=title.get(docnum, 0.0),
                body=body.get(docnum, 0.0),
                coverage=coverage.get(docnum, 0.0),
            )
            for docnum, score in ranked
        }
        return [self._ids[docnum] for docnum, _ in ranked], scores

    def _run(self, query: Query, limit: int | None, allow: set[int] | None,
             deadline: Deadline | None) -> Results:
        """Run a Whoosh query, stopped between two matched documents past the deadline."""
        if deadline is None:
            collector = self._searcher.collector(limit=limit, filter=allow)
        else:  # the filter outermost, as Whoosh puts it: it asks for the matches
            collector = DeadlineCollector(self._searcher.collector(limit=limit), deadline)
            if allow is not None:
                collector = FilterCollector(collector, allow)
        self._searcher.search_with_collector(query, collector)
        return collector.results()

    def _field_scores(
        self, terms: dict[str, list[tuple[str, ...]]], fields: Sequence[str], docnums: set[int],
        deadline: Deadline | None,
    ) -> dict[int, float]:
        results = self._run(self._query(terms, fields), None, docnums, deadline)
        return {hit.docnum: float(hit.score) for hit in results}

    def _coverage(
        self, terms: dict[str, list[tuple[str, ...]]], docnums: set[int]
    ) -> dict[int, float]:
        """Return per document the best share of a language's query terms it contains.

        A synonym group counts as one term, found when any of its terms is.
        """
        best: dict[int, float] = {}
        for lang, words in terms.items():
            if not words:
                continue
            counts: dict[int, int] = {}
            reader = self._searcher.reader()
            for group in words:
                containing: set[int] = set()
                for name, term in ((n, t) for n in FIELDS for t in group):
                    field = f"{name}_{lang}"
                    if (field, term) in reader:
                        containing.update(reader.postings(field, term).all_ids())
                for docnum in containing & docnums:
                    counts[docnum] = counts.get(docnum, 0) + 1
            for docnum, count in counts.items():
                best[docnum] = max(best.get(docnum, 0.0), count / len(words))
        return best
