"""Starting a background reindex, for the dashboard's button and the JSON API alike."""

from __future__ import annotations

from kbsearch.config import Settings
from kbsearch.http.context import components
from kbsearch.index.reindex import ReindexJob, ReindexPlan


def reindex_plan(settings: Settings) -> ReindexPlan:
    """Return what a reindex builds under these settings: the articles into the index."""
    return ReindexPlan(
        articles_dir=settings.articles, index_dir=settings.index,
        languages=tuple(settings.languages), chunk_tokens=settings.chunk_tokens,
        exact_limit=settings.exact_limit, keep_builds=settings.keep_builds,
        batch_size=settings.batch_size,
    )


def start_reindex(requested_by: str, strict: bool) -> ReindexJob:
    """Start reindexing the articles in the background; raise ReindexRunningError if one runs.

    The build embeds with the app's own model (loaded in the background thread if this
    process has not loaded it yet).
    """
    parts = components()
    service = parts.service
    return parts.reindex.start(reindex_plan(parts.settings), requested_by, strict,
                               lambda: service.embedder)
