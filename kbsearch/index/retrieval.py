"""Retrievers: each finds candidate articles in a build its own way; the service combines them.

A retriever is asked a :class:`RetrievalQuery` (the text, its vector, the languages and
which articles may be returned) and answers :class:`Retrieved`: article positions in the
build, best first, with named raw scores for each. Dense (FAISS over chunk vectors) and
keyword (Whoosh BM25F) retrieval are the two kbsearch ships; a new one implements
:class:`Retriever`, and the ranking features that read its scores are added in
``kbsearch.ranking.scoring``.

A retriever that does not read the query vector (``needs_vector`` false: keyword search)
runs on a :class:`RetrieverPool` thread while the query is embedded (:func:`retrieve_all`):
the embedding runs in native code without Python's lock, so a search costs about the
longer of the two instead of their sum.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from kbsearch.index import dense
from kbsearch.index.builds import LoadedIndex
from kbsearch.index.deadline import Deadline


@dataclass(frozen=True)
class SearchRequest:
    """A validated search: the query and its filters."""

    query: str
    k: int
    language: str | None = None
    tags: tuple[str, ...] = ()
    category: str | None = None
    visibility: str = "public"
    mode: str = "hybrid"


@dataclass(frozen=True)
class RetrievalQuery:
    """What every retriever is asked: text, vector, languages and the allowed articles.

    ``allowed`` is a boolean mask over the build's articles; ``everything`` says that it
    allows all of them (so that no filter needs to be applied). A retriever that can be
    stopped midway raises SearchTimeoutError when the ``deadline`` passes. ``vector`` is
    None for a retriever that does not need it (it may run before the query is embedded).
    """

    text: str
    vector: np.ndarray | None
    languages: tuple[str, ...]
    allowed: np.ndarray
    deadline: Deadline | None = None

    @property
    def everything(self) -> bool:
        """Return True when every article of the build may be returned."""
        return bool(self.allowed.all())


@dataclass(frozen=True)
class Retrieved:
    """One retriever's answer: article positions best first, with named raw scores."""

    order: tuple[int, ...]
    scores: Mapping[int, Mapping[str, float]]


class Retriever(Protocol):
    """Finds up to ``n`` candidate articles for a query in a build.

    ``needs_vector``: whether it reads the query vector; one that does not is given None
    and runs while the query is embedded.
    """

    name: str
    needs_vector: bool

    def retrieve(self, index: LoadedIndex, query: RetrievalQuery, n: int) -> Retrieved:
        """Return the best ``n`` allowed articles, best first."""
        ...


class DenseRetriever:
    """Articles by their best chunk's cosine with the query vector (FAISS)."""

    name = "dense"
    needs_vector = True

    def retrieve(self, index: LoadedIndex, query: RetrievalQuery, n: int) -> Retrieved:
        """Search chunks (enough to fill ``n`` distinct articles) and keep each article once."""
        if query.vector is None:
            raise ValueError("dense retrieval needs the query vector")
        chunk_mask = None if query.everything else query.allowed[index.chunk_article]
        per_article = max(1, int(np.ceil(len(index.chunk_article) / max(1, len(query.allowed)))))
        found = dense.search(index.dense, index.chunk_vectors, query.vector,
                             n * per_article * 2, chunk_mask)
        articles = index.chunk_article[found.rows]
        _, first = np.unique(articles, return_index=True)  # each article's best chunk
        first = np.sort(first)[:n]
        order = tuple(articles[first].tolist())
        scores = found.scores[first].tolist()
        return Retrieved(order, {a: {"dense": s} for a, s in zip(order, scores, strict=True)})


class KeywordRetriever:
    """Articles by BM25F over title, tags and body in the query's languages (Whoosh)."""

    name = "keyword"
    needs_vector = False

    def retrieve(self, index: LoadedIndex, query: RetrievalQuery, n: int) -> Retrieved:
        """Search the keyword index; scores are BM25F overall, per field, and term coverage."""
        allowed = None if query.everything else index.keyword_docnums[query.allowed]
        ids, found = index.keyword.search(query.text, n, allowed, query.languages,
                                          query.deadline)
        order = tuple(index.positions[a] for a in ids)
        scores = {
            index.positions[a]: {"bm25": s.total, "bm25_title": s.title, "bm25_body": s.body,
                                 "coverage": s.coverage}
            for a, s in found.items()
        }
        return Retrieved(order, scores)


def best_chunk_similarity(
    index: LoadedIndex, positions: list[int], vector: np.ndarray
) -> np.ndarray:
    """Return each article's best chunk cosine with a query vector (one product for all)."""
    if not positions:
        return np.zeros(0)
    starts = index.chunk_starts[positions]
    counts = index.chunk_starts[np.asarray(positions) + 1] - starts
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rows = np.repeat(starts - offsets, counts) + np.arange(int(counts.sum()))
    similarities = index.chunk_vectors[rows] @ vector
    return np.maximum.reduceat(similarities, offsets).astype(np.float64)


T = TypeVar("T")


class RetrieverPool:
    """Threads on which retrievers run beside the query embedding, made per process.

    Threads do not survive ``fork``: a gunicorn worker forked from a master that had
    searched would inherit a pool without threads. So each process makes its own on first
    use.
    """

    def __init__(self, threads: int = 4) -> None:
        self._threads = threads
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0

    def submit(self, function: Callable[..., T], *args: object) -> Future[T]:
        """Run ``function(*args)`` on one of this process's threads."""
        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                self._executor = ThreadPoolExecutor(self._threads,
                                                    thread_name_prefix="kbsearch-retrieve")
                self._pid = os.getpid()
            return self._executor.submit(function, *args)


def retrieve_all(
    retrievers: Sequence[Retriever], index: LoadedIndex, query: RetrievalQuery,
    vector_of: Callable[[], np.ndarray], n: int, pool: RetrieverPool,
) -> tuple[dict[str, Retrieved], np.ndarray]:
    """Ask every retriever for ``n`` candidates; return their answers and the query vector.

    Those that need no vector start on ``pool`` threads first, then ``vector_of`` embeds
    the query (or finds it cached) here, then the others run here. ``query.vector`` is
    ignored. The deadline is checked after the embedding and after each retriever, in the
    retrievers' order; a retriever's error is raised here, as if it had run here.
    """
    without = dataclasses.replace(query, vector=None)
    early = {i: pool.submit(r.retrieve, index, without, n)
             for i, r in enumerate(retrievers) if not r.needs_vector}
    try:
        vector = vector_of()
        if query.deadline is not None:
            query.deadline.check("embedding")  # not stoppable, but as long as a query may be
        with_vector = dataclasses.replace(query, vector=vector)
        found = {}
        for i, retriever in enumerate(retrievers):
            if i in early:
                found[retriever.name] = early[i].result()
            else:
                found[retriever.name] = retriever.retrieve(index, with_vector, n)
            if query.deadline is not None:
                query.deadline.check(retriever.name)
    finally:
        for future in early.values():
            future.cancel()  # one not started yet when the embedding or a retriever failed
    return found, vector
