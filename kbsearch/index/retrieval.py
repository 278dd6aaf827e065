"""What a retrieval is asked: the query and its filters, checked by the search service."""

from __future__ import annotations

from dataclasses import dataclass


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
