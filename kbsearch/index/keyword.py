"""The keyword index: Whoosh BM25F over title, tags and body, one field set per language.

A search reads the postings of the query's terms once, through Whoosh's own postings and
BM25F scorer, and adds up each document's total, title and body scores and the query terms
it contains in that one pass (it used to run three Whoosh searches: all fields, title,
body, then read the postings again for the term coverage). The scores are Whoosh's, added
in the order its Or query adds them, with one deliberate difference: a synonym group
scores its best term in the document, where Whoosh's DisjunctionMaxMatcher (2.7.5) also
took the score of another document at which a second term's postings stood.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from whoosh import index as whoosh_index
from whoosh import scoring
from whoosh.fields import ID, TEXT, Schema

from kbsearch.content.analysis import LANGUAGES, KbAnalyzer, Lexicon, query_term_groups
from kbsearch.content.articles import Article
from kbsearch.content.chunking import plain_text
from kbsearch.content.synonyms import NO_RULES, SYNONYMS_FILE, Synonyms, load_synonyms
from kbsearch.errors import SearchTimeoutError
from kbsearch.index.deadline import Deadline

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
    _write_analysis(folder, lexicon, synonyms)
    ix = whoosh_index.create_in(str(folder), make_schema(lexicon, synonyms))
    writer = ix.writer(limitmb=128)
    for article in articles:
        writer.add_document(**_document(article))
    writer.commit()


def update_keyword_index(
    previous: Path, folder: Path, remove: Iterable[str], add: Iterable[Article],
    lexicon: Lexicon, synonyms: Synonyms,
) -> None:
    """Write into ``folder`` a copy of the keyword index in ``previous``, changed.

    The articles with the ids in ``remove`` are deleted and those in ``add`` added,
    analysed with ``lexicon`` and ``synonyms``, which are stored as the index's own. The
    other articles keep the terms they were indexed with: their compounds stay split by
    the lexicon of the build that last indexed them (``synonyms`` must be the ones they
    were indexed with). Whoosh writes the additions as a new segment, merges small
    segments and drops deleted documents from the segments it merges; a deleted
    document is never found, but counts in the term statistics of BM25 until then.
    ``previous`` is only read.
    """
    shutil.copytree(previous, folder)
    _write_analysis(folder, lexicon, synonyms)
    ix = whoosh_index.open_dir(str(folder), schema=make_schema(lexicon, synonyms))
    writer = ix.writer(limitmb=128)
    for article_id in remove:
        writer.delete_by_term("id", article_id)
    for article in add:
        writer.add_document(**_document(article))
    writer.commit()


def _write_analysis(folder: Path, lexicon: Lexicon, synonyms: Synonyms) -> None:
    """Store the lexicon (one word a line) and the synonyms file beside the index."""
    (folder / LEXICON_FILE).write_text("".join(f"{w}\n" for w in sorted(lexicon.words)), "utf-8")
    (folder / SYNONYMS_FILE).write_text(synonyms.text, "utf-8")


def _document(article: Article) -> dict[str, str]:
    """Return an article's fields for Whoosh: its id, and title, tags, body of its language."""
    lang = article.language
    return {
        "id": article.id,
        f"title_{lang}": article.title,
        f"tags_{lang}": " ".join(article.tags),
        f"body_{lang}": plain_text(article.body),
    }


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
        self._schema = make_schema(self._lexicon, synonyms)
        self._ix = whoosh_index.open_dir(str(folder), readonly=True, schema=self._schema)
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

    def _parts(self, terms: dict[str, list[tuple[str, ...]]]) -> list[_Part]:
        """Return the query's parts: per language, term group and field, its terms' postings.

        A part scores a document by the group's best term in that field, with the field's
        boost; the parts are in the order in which the total adds them. A term missing
        from the index is left out.
        """
        reader = self._searcher.reader()
        parts: list[_Part] = []
        for lang, groups in terms.items():
            for number, group in enumerate(groups):
                for name in FIELDS:
                    field_name = f"{name}_{lang}"
                    encoded = (self._schema[field_name].to_bytes(t) for t in group)
                    present = [t for t in encoded if (field_name, t) in reader]
                    parts.append(_Part(name, (lang, number), tuple(present), field_name))
        return parts

    def _scores(self, parts: list[_Part], deadline: Deadline | None) -> dict[int, _DocScores]:
        """Return every matching document's BM25F scores: all fields, title, body, groups.

        One pass over the postings of the query's terms. A part's score is its best term's,
        times the field's boost (as a boosted Whoosh Term); the total adds the parts in
        order, as Whoosh's Or does for an index of up to 5,000 documents, so that scores
        equal a Whoosh search's to the last bit (larger indexes: to rounding). The
        deadline is checked before each posting is read.
        """
        docs: dict[int, _DocScores] = {}
        for part in parts:
            best: dict[int, float] = {}
            boost = FIELD_BOOSTS[part.name]
            for term in part.terms:
                matcher = self._searcher.postings(part.field, term, weighting=self._weighting)
                while matcher.is_active():
                    if deadline is not None:
                        deadline.check("keyword")
                    docnum = matcher.id()
                    score = matcher.score() * boost if boost != 1.0 else matcher.score()
                    if score > best.get(docnum, -1.0):
                        best[docnum] = score
                    matcher.next()
            for docnum, score in best.items():
                doc = docs.get(docnum)
                if doc is None:
                    doc = docs[docnum] = _DocScores()
                doc.total += score
                if part.name == "title":
                    doc.title += score
                elif part.name == "body":
                    doc.body += score
                doc.groups.add(part.group)
        return docs

    def search(
        self,
        query: str,
        limit: int,
        allowed: set[str] | None = None,
        languages: Sequence[str] = LANGUAGES,
        deadline: Deadline | None = None,
    ) -> tuple[list[str], dict[str, KeywordScores]]:
        """Return the top article ids by BM25F, and field scores and term coverage for them.

        Ties are broken by the order of the index, as Whoosh's top-N collector does. With a
        ``deadline``, raise SearchTimeoutError when it passes, also while waiting for
        another search to finish with the searcher or between two postings read.
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
            docs = self._scores(self._parts(terms), deadline)
        finally:
            self._lock.release()
        matched = [(docnum, doc) for docnum, doc in docs.items()
                   if doc.total > 0 and (allow is None or docnum in allow)]
        matched.sort(key=lambda item: (-item[1].total, item[0]))
        ranked = matched[:limit]
        sizes = {lang: len(groups) for lang, groups in terms.items()}
        scores = {
            self._ids[docnum]: KeywordScores(
                total=doc.total, title=doc.title, body=doc.body,
                coverage=_coverage(doc.groups, sizes),
            )
            for docnum, doc in ranked
        }
        return [self._ids[docnum] for docnum, _ in ranked], scores


@dataclass(frozen=True)
class _Part:
    """One part of a keyword query: a term group of one language in one field."""

    name: str
    group: tuple[str, int]
    terms: tuple[bytes, ...]
    field: str


@dataclass
class _DocScores:
    """A document's scores while the postings are read, and the term groups it contains."""

    total: float = 0.0
    title: float = 0.0
    body: float = 0.0
    groups: set[tuple[str, int]] = field(default_factory=set)


def _coverage(groups: set[tuple[str, int]], sizes: dict[str, int]) -> float:
    """Return the best share, over the languages, of a language's query term groups found.

    A synonym group counts as one term, found when any of its terms is, in any field.
    """
    best = 0.0
    for lang, size in sizes.items():
        if size:
            found = sum(1 for group_lang, _ in groups if group_lang == lang)
            best = max(best, found / size)
    return best
