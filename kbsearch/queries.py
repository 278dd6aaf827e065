"""The checks of a search's parameters: the same for the API, the FAQ page and the CLI."""

from __future__ import annotations

from collections.abc import Sequence

from kbsearch.config import Settings
from kbsearch.content.visibility import VISIBILITIES
from kbsearch.errors import QueryError
from kbsearch.index.retrieval import SearchRequest
from kbsearch.ranking.scoring import MODES
from kbsearch.stores.callbacks import clean_text


def check_search(
    settings: Settings,
    query: str | None,
    k: int | str | None = None,
    language: str | None = None,
    tags: Sequence[str] | str | None = None,
    category: str | None = None,
    visibility: str = "public",
    mode: str = "hybrid",
) -> SearchRequest:
    """Return the checked request of a search; raise QueryError naming the bad parameter."""
    query = clean_text(str(query)) if query is not None else ""  # no control characters
    if not query:
        raise QueryError("q", "the query is empty; type a question or some words")
    if len(query) > settings.max_query_chars:
        raise QueryError(
            "q",
            f"the query has {len(query)} characters; at most "
            f"{settings.max_query_chars} are allowed",
        )
    if k is None or k == "":
        k = settings.default_k
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise QueryError("k", f"{k!r} is not a whole number") from None
    if not 1 <= k <= settings.max_k:
        raise QueryError("k", f"must be between 1 and {settings.max_k}, got {k}")
    if language is not None and language != "":
        if language not in settings.languages:
            raise QueryError(
                "lang", f"{language!r} is not one of {', '.join(settings.languages)}"
            )
    else:
        language = None
    if isinstance(tags, str):
        tags = [t for t in tags.split(",")]
    tag_tuple = tuple(dict.fromkeys(t.strip().lower() for t in tags or () if t.strip()))
    if visibility not in VISIBILITIES:
        raise QueryError("visibility",
                         f"{visibility!r} is not one of {', '.join(VISIBILITIES)}")
    if mode not in MODES:
        raise QueryError("mode", f"{mode!r} is not one of {', '.join(MODES)}")
    category = category.strip() if category and category.strip() else None
    return SearchRequest(query, k, language, tag_tuple, category, visibility, mode)
