"""The query vector cache: a repeated query, and an FAQ request, cost one embedding."""

from __future__ import annotations

import numpy as np
import pytest

from kbsearch.index.vector_cache import VectorCache

from .conftest import service_over
from .fakes import FakeEmbedder


class CountingEmbedder(FakeEmbedder):
    """The fake embedder, counting the query texts it embeds."""

    def __init__(self) -> None:
        """Start with no query embedded."""
        super().__init__()
        self.queries: list[str] = []

    def embed_queries(self, texts):
        """Count, then embed as the fake embedder does."""
        self.queries += list(texts)
        return super().embed_queries(texts)


def test_the_cache_returns_the_same_vector_and_embeds_once():
    embedder = FakeEmbedder()
    calls: list[str] = []

    def embed(text: str) -> np.ndarray:
        calls.append(text)
        return embedder.embed_queries([text])[0]

    cache = VectorCache(2)
    first = cache.get("Zählerstand melden", embed)
    again = cache.get("Zählerstand melden", embed)
    assert again is first and calls == ["Zählerstand melden"]
    assert np.array_equal(first, embedder.embed_queries(["Zählerstand melden"])[0])
    assert first.dtype == np.float32 and not first.flags.writeable


def test_the_cache_is_bounded_and_forgets_the_least_recently_used():
    calls: list[str] = []

    def embed(text: str) -> np.ndarray:
        calls.append(text)
        return np.full(3, len(calls), dtype=np.float32)

    cache = VectorCache(2)
    cache.get("a", embed)
    cache.get("b", embed)
    cache.get("a", embed)  # a is now the most recently used
    cache.get("c", embed)  # b goes
    assert len(cache) == 2 and calls == ["a", "b", "c"]
    cache.get("a", embed)
    cache.get("b", embed)
    assert calls == ["a", "b", "c", "b"] and len(cache) == 2
    off = VectorCache(0)
    off.get("a", embed)
    off.get("a", embed)
    assert len(off) == 0 and calls[-2:] == ["a", "a"]


def test_a_repeated_search_embeds_once_and_answers_the_same(tmp_path, sample_index):
    embedder = CountingEmbedder()
    service = service_over(tmp_path, sample_index, embedder)
    first = service.search("Router blinkt rot", log=False)
    second = service.search("Router blinkt rot", log=False)
    assert embedder.queries == ["Router blinkt rot"]
    assert [(r.article.id, r.hit.probability, r.snippet) for r in first.results] == [
        (r.article.id, r.hit.probability, r.snippet) for r in second.results]
    uncached = service_over(tmp_path / "off", sample_index, CountingEmbedder(), query_cache=0)
    uncached.search("Router blinkt rot", log=False)
    uncached.search("Router blinkt rot", log=False)
    assert uncached.embedder.queries == ["Router blinkt rot"] * 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("ui", ["de", "en"])
@pytest.mark.parametrize("query", ["Router blinkt rot", "How do I submit my meter reading?",
                                   "Zählerstand melden"])
def test_an_faq_request_embeds_its_query_once(tmp_path, sample_index, ui, query):
    from kbsearch.api import create_app

    embedder = CountingEmbedder()
    service = service_over(tmp_path, sample_index, embedder)
    client = create_app({"TESTING": True}, search_service=service).test_client()
    for path in ("/suche/fragment", "/"):
        embedder.queries.clear()
        response = client.get(path, query_string={"q": query, "ui": ui, "x": path})
        assert response.status_code == 200
        assert embedder.queries == [query]
        service._query_vectors = VectorCache(service.settings.query_cache)  # forget it
