"""Retrievers: each finds candidate articles in a build its own way; the service combines them.

A retriever is asked a :class:`RetrievalQuery` (the text, its vector, the languages and
which articles may be returned) and answers :class:`Retrieved`: article positions in the
build, best first, with named raw scores for each. Dense (FAISS over chunk vectors) and
keyword (Whoosh BM25F) retrieval are the two kbsearch ships; a new one implements
:class:`Retriever`, and the ranking features that read its scores are added in
``kbsearch.ranking.scoring``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

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
    stopped midway raises SearchTimeoutError when the ``deadline`` passes.
    """

    text: str
    vector: np.ndarray
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
    """Finds up to ``n`` candidate articles for a query in a build."""

    name: str

    def retrieve(self, index: LoadedIndex, query: RetrievalQuery, n: int) -> Retrieved:
        """Return the best ``n`` allowed articles, best first."""
        ...


class DenseRetriever:
    """Articles by their best chunk's cosine with the query vector (FAISS)."""

    name = "dense"

    def retrieve(self, index: LoadedIndex, query: RetrievalQuery, n: int) -> Retrieved:
        """Search chunks (enough to fill ``n`` distinct articles) and keep each article once."""
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
