"""Retrievers run together: those without a vector beside the query embedding."""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Any

import numpy as np
import pytest

from kbsearch.errors import SearchTimeoutError
from kbsearch.index.deadline import Deadline
from kbsearch.index.retrieval import (
    DenseRetriever,
    RetrievalQuery,
    Retrieved,
    RetrieverPool,
    retrieve_all,
)

VECTOR = np.array([0.6, 0.8], dtype=np.float32)


class Recording:
    """A retriever that records what it was asked, on which thread, and answers one article."""

    def __init__(self, name: str, needs_vector: bool, started: threading.Event | None = None,
                 error: Exception | None = None) -> None:
        self.name, self.needs_vector = name, needs_vector
        self.started, self.error = started, error
        self.vectors: list[Any] = []
        self.threads: list[str] = []

    def retrieve(self, index: Any, query: RetrievalQuery, n: int) -> Retrieved:
        if self.started is not None:
            self.started.set()
        self.vectors.append(query.vector)
        self.threads.append(threading.current_thread().name)
        if self.error is not None:
            raise self.error
        return Retrieved((len(self.vectors),), {len(self.vectors): {self.name: 1.0}})


def text_query(deadline: Deadline | None = None) -> RetrievalQuery:
    return RetrievalQuery("Zählerstand melden", VECTOR, ("de",), np.ones(3, dtype=bool),
                          deadline)


def test_a_retriever_without_vector_runs_while_the_query_is_embedded() -> None:
    started = threading.Event()
    keyword = Recording("keyword", needs_vector=False, started=started)
    dense = Recording("dense", needs_vector=True)

    def embed() -> np.ndarray:
        # sequential retrieval would wait here for ever: keyword search starts first
        assert started.wait(10), "the keyword retriever did not start before the embedding ended"
        return VECTOR

    found, vector = retrieve_all((dense, keyword), None, text_query(), embed, 5,  # type: ignore[arg-type]
                                 RetrieverPool())
    assert list(found) == ["dense", "keyword"] and vector is VECTOR
    assert keyword.vectors == [None] and keyword.threads[0].startswith("kbsearch-retrieve")
    assert dense.vectors[0] is VECTOR and dense.threads == [threading.current_thread().name]


def test_a_failing_retriever_or_embedding_fails_the_retrieval() -> None:
    pool = RetrieverPool()
    broken = Recording("keyword", needs_vector=False, error=RuntimeError("index file gone"))
    with pytest.raises(RuntimeError, match="index file gone"):
        retrieve_all((Recording("dense", True), broken), None, text_query(),  # type: ignore[arg-type]
                     lambda: VECTOR, 5, pool)

    def no_model() -> np.ndarray:
        raise OSError("model missing")

    dense = Recording("dense", True)
    with pytest.raises(OSError, match="model missing"):
        retrieve_all((dense, Recording("keyword", False)), None, text_query(),  # type: ignore[arg-type]
                     no_model, 5, pool)
    assert dense.vectors == []  # nothing that needs the vector ran


def test_the_deadline_is_checked_after_the_embedding() -> None:
    deadline = Deadline(limit=1.0, expires=1.0, clock=lambda: 10.0)  # past it
    dense = Recording("dense", True)
    with pytest.raises(SearchTimeoutError) as stopped:
        retrieve_all((dense,), None, text_query(deadline), lambda: VECTOR, 5,  # type: ignore[arg-type]
                     RetrieverPool())
    assert stopped.value.stage == "embedding" and dense.vectors == []


def test_dense_retrieval_refuses_a_query_without_vector() -> None:
    query = RetrievalQuery("x", None, ("de",), np.ones(1, dtype=bool))
    with pytest.raises(ValueError, match="needs the query vector"):
        DenseRetriever().retrieve(None, query, 5)  # type: ignore[arg-type]


def _search_in_child(pool: RetrieverPool, done: Any) -> None:
    done.put(pool.submit(os.getpid).result(timeout=10))


def test_a_forked_worker_makes_its_own_threads() -> None:
    """A gunicorn worker forked after the master searched gets working threads."""
    pool = RetrieverPool()
    assert pool.submit(os.getpid).result() == os.getpid()  # the parent's threads exist
    context = multiprocessing.get_context("fork")
    done = context.Queue()
    child = context.Process(target=_search_in_child, args=(pool, done))
    child.start()
    child.join(30)
    assert child.exitcode == 0 and done.get(timeout=5) == child.pid
