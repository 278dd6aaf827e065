"""The keyword index: Whoosh BM25F over title, tags and body, one field set per language.

A search reads the postings of the query's terms once, through Whoosh's own postings and
BM25F scorer, and adds up each document's total, title and body scores and the query terms
it contains in that one pass (it used to run three Whoosh searches: all fields, title,
body, then read the postings again for the term coverage). The scores are Whoosh's, added
in the order its Or query adds them, with one deliberate difference: a synonym group
scores its best term in the document, where Whoosh's DisjunctionMaxMatcher (2.7.5) also
took the score of another document at which a second term's postings stood.

A term's postings and their scores are kept as NumPy arrays once read (a build never
changes), up to ``POSTINGS_CACHE`` postings per index, and a query adds them up as arrays:
reading postings one by one in Python grew with the knowledge base, to most of a search's
time at 1,000 articles. A build also stores each segment's long postings decoded beside it
(:mod:`kbsearch.index.decoded`), which a search maps instead of reading Whoosh's blocks.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from whoosh import index as whoosh_index
from whoosh import scoring
from whoosh.fields import ID, TEXT, Schema

from kbsearch.content.analysis import LANGUAGES, KbAnalyzer, Lexicon, query_term_groups
from kbsearch.content.articles import Article
from kbsearch.content.chunking import plain_text
from kbsearch.content.synonyms import NO_RULES, SYNONYMS_FILE, Synonyms, load_synonyms
from kbsearch.errors import SearchTimeoutError
from kbsearch.index.deadline import Deadline
from kbsearch.index.decoded import open_decoded, write_decoded_postings
from kbsearch.index.mapped import MappedStorage
from kbsearch.index.postings import PostingsReader, TermPostings, field_lengths

FIELDS = ("title", "tags", "body")
FIELD_BOOSTS = {"title": 2.0, "tags": 1.5, "body": 1.0}
BM25_K1 = 0.9
BM25_B = 0.4
LEXICON_FILE = "lexicon.txt"
POSTINGS_CACHE = 4_000_000  # postings (with their scores, 16 bytes each) kept per index


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
    schema = make_schema(lexicon, synonyms)
    ix = whoosh_index.create_in(str(folder), schema)
    writer = ix.writer(limitmb=128)
    for article in articles:
        writer.add_document(**_document(article))
    writer.commit()
    write_decoded_postings(folder, schema)


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

    The copy is made of hard links where the file system allows them: Whoosh writes each
    file of an index once and changes it no more (deletions and new segments go to new
    files, the table of contents to a new generation), so the two folders may share the
    files; the lexicon and synonyms files, which kbsearch writes anew, are unlinked first.
    Copying the files took most of a reindex at 100k articles (1.8 GB).
    """
    shutil.copytree(previous, folder, copy_function=_link_or_copy)
    for name in (LEXICON_FILE, SYNONYMS_FILE):
        (folder / name).unlink(missing_ok=True)
    _write_analysis(folder, lexicon, synonyms)
    schema = make_schema(lexicon, synonyms)
    ix = whoosh_index.open_dir(str(folder), schema=schema)
    writer = ix.writer(limitmb=128)
    for article_id in remove:
        writer.delete_by_term("id", article_id)
    for article in add:
        writer.add_document(**_document(article))
    writer.commit()
    write_decoded_postings(folder, schema)


def _link_or_copy(source: str, target: str) -> None:
    """Hard-link a file, or copy it where the file system has no hard links."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def read_lexicon(folder: Path) -> frozenset[str]:
    """Return the words of the lexicon stored beside a keyword index."""
    return frozenset((folder / LEXICON_FILE).read_text("utf-8").split())


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

    def __init__(self, folder: Path, decoded: bool = True) -> None:
        """Open the index in ``folder``; queries use the lexicon it was built with.

        The schema is made here from the stored lexicon and handed to Whoosh, which then
        skips the schema it pickled at build time (whose analyzer names a module path).
        With ``decoded`` (the default), long postings are read from the decoded files the
        build wrote beside its segments; without, from Whoosh's blocks alone (to compare).
        """
        self._lexicon = Lexicon(read_lexicon(folder))
        synonyms = load_synonyms(folder / SYNONYMS_FILE)
        self._synonyms = {lang: synonyms.for_language(lang) for lang in LANGUAGES}
        self._schema = make_schema(self._lexicon, synonyms)
        # mapped, not copied into each process (see kbsearch/index/mapped.py)
        self._ix = MappedStorage(str(folder)).open_index(schema=self._schema)
        self._weighting = scoring.BM25F(B=BM25_B, K1=BM25_K1)
        self._searcher = self._ix.searcher(weighting=self._weighting)
        reader = self._searcher.reader()
        # long postings decoded at build time, where the build wrote them
        self._postings_reader = PostingsReader(
            reader, partial(open_decoded, folder) if decoded else None)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, bytes], _Postings] = OrderedDict()
        self._cached = 0  # postings in the cache
        # every document's length per field, as BM25F normalises by it (read at open, in
        # milliseconds: asked of Whoosh per document on a first search, it took seconds)
        self._lengths = {field: field_lengths(reader, field)
                         for field in (f"{name}_{lang}" for name in FIELDS for lang in LANGUAGES)}
        self._doc_count = self._searcher.doc_count_all()
        self._ids: list[str] = [""] * self._doc_count
        for docnum, stored in reader.iter_docs():
            self._ids[docnum] = stored["id"]
        self._docnums = {article_id: n for n, article_id in enumerate(self._ids) if article_id}

    def close(self) -> None:
        """Release the searcher's files and the decoded postings' files."""
        self._searcher.close()
        self._postings_reader.close()

    def docnums_of(self, article_ids: Iterable[str]) -> np.ndarray:
        """Return the index's document number of each article id, -1 for one not in it.

        A build maps its article positions once, so that a filtered search hands
        :meth:`search` document numbers, not a set of ids to look up per query.
        """
        return np.array([self._docnums.get(a, -1) for a in article_ids], dtype=np.int64)

    def terms(self, query: str, languages: Sequence[str]) -> dict[str, list[tuple[str, ...]]]:
        """Return the analysed query terms per language, a word's synonyms in one group."""
        return {lang: query_term_groups(query, lang, self._lexicon, self._synonyms[lang])
                for lang in languages}

    def _parts(self, terms: dict[str, list[tuple[str, ...]]]) -> list[_Part]:
        """Return the query's parts: per language, term group and field, its terms' postings.

        A part scores a document by the group's best term in that field, with the field's
        boost; the parts are in the order in which the total adds them. A term missing
        from the index has no postings (:meth:`_postings`).
        """
        parts: list[_Part] = []
        for lang, groups in terms.items():
            for number, group in enumerate(groups):
                for name in FIELDS:
                    field_name = f"{name}_{lang}"
                    encoded = tuple(self._schema[field_name].to_bytes(t) for t in group)
                    parts.append(_Part(name, (lang, number), encoded, field_name))
        return parts

    def _postings(self, field_name: str, term: bytes, deadline: Deadline | None) -> _Postings:
        """Return a term's postings in a field with their BM25F scores (call under the lock).

        Read from Whoosh's postings the first time (:class:`PostingsReader`, a block at a
        time), then kept: a build never
        changes, so neither do its scores. A term missing from the field has none, which is
        kept too. At most POSTINGS_CACHE postings are kept (a missing term counts as one),
        the least recently used going first.
        """
        key = (field_name, term)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        check = None if deadline is None else partial(deadline.check, "keyword")
        read = self._postings_reader.read(field_name, term, check)
        postings = (read.docnums, self._bm25(field_name, read))
        self._cache[key] = postings
        self._cached += max(1, len(read.docnums))
        while self._cached > POSTINGS_CACHE and len(self._cache) > 1:
            _, (dropped, _) = self._cache.popitem(last=False)
            self._cached -= max(1, len(dropped))
        return postings

    def _bm25(self, field_name: str, postings: TermPostings) -> np.ndarray:
        """Return the BM25F scores of a term's postings: Whoosh's BM25FScorer, as arrays.

        The same operations in the same order as ``whoosh.scoring.bm25`` on the same
        statistics (the term's idf as ``WeightingModel.idf`` computes it, the field's
        average length, each document's field length as Whoosh stores it), so the scores
        are equal to the last bit; asking Whoosh's scorer posting by posting took most of
        a search over 10,000 articles. The idf comes from the document frequency read with
        the postings: the searcher's own idf looked the term up again in every segment
        (and kept every term ever asked in a cache without bound).
        """
        idf = math.log(self._doc_count / (postings.doc_frequency + 1)) + 1
        avgfl = self._searcher.avg_field_length(field_name) or 1
        tf = postings.weights
        fl = self._lengths[field_name][postings.docnums]
        b, k1 = BM25_B, BM25_K1
        return idf * ((tf * (k1 + 1)) / (tf + k1 * ((1 - b) + b * fl / avgfl)))

    def _scores(self, parts: list[_Part], deadline: Deadline | None) -> _Matches:
        """Return every matching document's BM25F scores: all fields, title, body, groups.

        One pass over the postings of the query's terms, as arrays. A part's score is its
        best term's, times the field's boost (as a boosted Whoosh Term); the total adds the
        parts in order, as Whoosh's Or does for an index of up to 5,000 documents, so that
        scores equal a Whoosh search's to the last bit (larger indexes: to rounding). The
        deadline is checked before each part and each block of postings read from the index.
        """
        found = []  # per part: its documents (sorted, distinct) and their best term's score
        for part in parts:
            if deadline is not None:
                deadline.check("keyword")
            lists = [self._postings(part.field, term, deadline) for term in part.terms]
            lists = [p for p in lists if len(p[0])]
            if not lists:
                found.append((_NO_DOCS, _NO_SCORES))
                continue
            boost = FIELD_BOOSTS[part.name]
            if len(lists) == 1:
                docs, scores = lists[0]
            else:  # a synonym group: each document's best term
                docs, position = self._union(d for d, _ in lists)
                scores = np.full(len(docs), -np.inf)
                for term_docs, term_scores in lists:
                    np.maximum.at(scores, position[term_docs], term_scores)
            found.append((docs, scores * boost if boost != 1.0 else scores))
        docnums, position = self._union(docs for docs, _ in found)
        matches = _Matches(docnums)
        for part, (docs, scores) in zip(parts, found, strict=True):
            if not len(docs):
                continue
            rows = position[docs]
            matches.total[rows] += scores
            if part.name == "title":
                matches.title[rows] += scores
            elif part.name == "body":
                matches.body[rows] += scores
            matches.groups.setdefault(part.group, np.zeros(len(docnums), dtype=bool))[rows] = True
        return matches

    def _union(self, lists: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Return the distinct document numbers of some postings, ascending, and a map.

        The map takes a document number to its row in the union. A mark per document of the
        index, not a sort: the postings are many, the documents few enough to mark.
        """
        seen = np.zeros(len(self._ids), dtype=bool)
        for docs in lists:
            seen[docs] = True
        union = np.flatnonzero(seen)
        position = np.zeros(len(self._ids), dtype=np.int64)
        position[union] = np.arange(len(union))
        return union, position

    def search(
        self,
        query: str,
        limit: int,
        allowed: np.ndarray | None = None,
        languages: Sequence[str] = LANGUAGES,
        deadline: Deadline | None = None,
    ) -> tuple[list[str], dict[str, KeywordScores]]:
        """Return the top article ids by BM25F, and field scores and term coverage for them.

        ``allowed``, when given, holds the document numbers that may be returned
        (:meth:`docnums_of`; -1 is ignored). Ties are broken by the order of the index, as
        Whoosh's top-N collector does. With a ``deadline``, raise SearchTimeoutError when
        it passes, also while waiting for another search to finish with the searcher or
        between two blocks of postings read.
        """
        terms = self.terms(query, languages)
        if not any(terms.values()):
            return [], {}
        allow = None
        if allowed is not None:
            allow = np.zeros(len(self._ids), dtype=bool)
            allow[allowed[allowed >= 0]] = True
            if not allow.any():
                return [], {}
        if not self._lock.acquire(timeout=deadline.remaining() if deadline else -1):
            raise SearchTimeoutError("keyword", deadline.limit if deadline else 0.0)
        try:
            matches = self._scores(self._parts(terms), deadline)
        finally:
            self._lock.release()
        keep = matches.total > 0
        if allow is not None:
            keep &= allow[matches.docnums]
        rows = _top(np.flatnonzero(keep), matches, limit)
        sizes = {lang: len(groups) for lang, groups in terms.items()}
        ids = [self._ids[int(docnum)] for docnum in matches.docnums[rows]]
        coverage = _coverage(matches.groups, sizes, rows)
        scores = {
            article_id: KeywordScores(
                total=float(matches.total[row]), title=float(matches.title[row]),
                body=float(matches.body[row]), coverage=float(share),
            )
            for article_id, row, share in zip(ids, rows, coverage, strict=True)
        }
        return ids, scores


@dataclass(frozen=True)
class _Part:
    """One part of a keyword query: a term group of one language in one field."""

    name: str
    group: tuple[str, int]
    terms: tuple[bytes, ...]
    field: str


# A term's documents in one field, ascending, and the BM25F score of each. A plain tuple:
# arrays hold no references, so after one collection the garbage collector stops tracking
# it, and a full collection does not walk the tens of thousands of cached postings (as a
# class instance each was one more object to walk: 25-30 ms a collection at 10k articles).
_Postings = tuple[np.ndarray, np.ndarray]


class _Matches:
    """The documents a query matches (ascending), their scores and the groups they have."""

    def __init__(self, docnums: np.ndarray) -> None:
        self.docnums = docnums
        self.total = np.zeros(len(docnums))
        self.title = np.zeros(len(docnums))
        self.body = np.zeros(len(docnums))
        self.groups: dict[tuple[str, int], np.ndarray] = {}


_NO_DOCS = np.zeros(0, dtype=np.int64)
_NO_SCORES = np.zeros(0, dtype=np.float64)


def _top(rows: np.ndarray, matches: _Matches, limit: int) -> np.ndarray:
    """Return the ``limit`` rows with the best totals: best first, ties in index order
    (as Whoosh's top-N collector breaks them).

    Only the rows that can be among them are sorted: those scoring at least the
    ``limit``-th best total (all of its ties included).
    """
    if limit <= 0:
        return rows[:0]
    totals = matches.total[rows]
    if len(rows) > limit:
        threshold = np.partition(totals, len(totals) - limit)[len(totals) - limit]
        rows, totals = rows[totals >= threshold], totals[totals >= threshold]
    return rows[np.lexsort((matches.docnums[rows], -totals))][:limit]


def _coverage(
    groups: dict[tuple[str, int], np.ndarray], sizes: dict[str, int], rows: np.ndarray
) -> np.ndarray:
    """Return, for the matches at ``rows``, the best share over the languages of a language's
    query term groups found.

    A synonym group counts as one term, found when any of its terms is, in any field.
    """
    best = np.zeros(len(rows))
    for lang, size in sizes.items():
        if size:
            found = np.zeros(len(rows))
            for (group_lang, _), has in groups.items():
                if group_lang == lang:
                    found += has[rows]
            best = np.maximum(best, found / size)
    return best
