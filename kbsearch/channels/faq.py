"""Attach a FAQ reader's "did this help?" vote to a logged search, and find alternatives.

Feedback always names a logged search that showed the article. A vote made on a page opened
from the search results uses that search (the link carries its id and the position). A vote
made while browsing has no search; it is attached to a search for the article's title (first
over everything the public sees, then within the article's language and category), made for
the purpose and logged on the "faq" channel marked synthetic (no person typed it, so training
learns neither a ranking example nor a learned question from it), provided the article is
among its results. When no search can take the vote it is reported as not stored, never dropped
silently. No Flask in here: the web layer passes the service and the caller's identity.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from kbsearch.content.articles import Article, family
from kbsearch.errors import (
    ArticleNotFoundError,
    DuplicateFeedbackError,
    FeedbackError,
    FeedbackStoreError,
)
from kbsearch.service import SearchResponse, SearchService

log = logging.getLogger(__name__)
VOTE_EVENTS: tuple[str, ...] = ("helpful", "not_helpful")
SEARCH_ID = re.compile(r"[0-9a-f]{32}")
TOKEN = SEARCH_ID  # a feedback token: 32 hex digits too
STORED, DUPLICATE, FAILED = "stored", "duplicate", "failed"


@dataclass(frozen=True)
class SearchContext:
    """The search a page was opened from: its id, the 1-based position of the result, and
    the search's feedback token (links and forms carry it: feedback needs it)."""

    search_id: str
    position: int | None = None
    token: str | None = None


@dataclass(frozen=True)
class Alternative:
    """Another article to offer, as shown in a search (links carry the search context)."""

    article: Article
    search_id: str
    position: int
    probability: float
    token: str | None = None


@dataclass(frozen=True)
class VoteOutcome:
    """What became of a vote: ``status`` is stored, duplicate or failed.

    ``search_id`` is the search the vote is attached to (None when it could not be);
    ``alternatives`` are filled for a "not helpful" vote.
    """

    event: str
    status: str
    search_id: str | None
    alternatives: tuple[Alternative, ...] = ()
    token: str | None = None


def parse_context(
    search_id: object, position: object, token: object = None, max_position: int = 100
) -> SearchContext | None:
    """Return the search context of a link or form; None when missing or malformed.

    A malformed position or token is left out (the feedback then needs another way in).
    """
    if not isinstance(search_id, str) or not SEARCH_ID.fullmatch(search_id):
        return None
    token = token if isinstance(token, str) and TOKEN.fullmatch(token) else None
    if (isinstance(position, str) and position.isascii() and position.isdigit()
            and 1 <= int(position) <= max_position):
        return SearchContext(search_id, int(position), token)
    return SearchContext(search_id, token=token)


def record_click(
    service: SearchService, article: Article, context: SearchContext, client: str
) -> SearchContext | None:
    """Record that a result was opened; return the context, or None when it is not valid.

    A repeated click (a reload) is not stored twice. A context naming an unknown search, or
    one that did not show this article at this position, is dropped (None).
    """
    try:
        service.record_feedback(context.search_id, article.id, "click", context.position,
                                channel="faq", client=client, token=context.token)
    except DuplicateFeedbackError:
        pass
    except FeedbackError as exc:
        log.info("click on %s ignored: %s", article.id, exc)
        return None
    except FeedbackStoreError as exc:
        log.warning("click on %s not stored: %s", article.id, exc)
    return context


def record_vote(
    service: SearchService,
    article: Article,
    event: str,
    client: str,
    context: SearchContext | None = None,
    remembered: SearchContext | None = None,
    alternatives: int = 5,
) -> VoteOutcome:
    """Store a helpful / not_helpful vote on the best search available and say how it went.

    Tries, in order: the search the page was opened from (``context``), the search an earlier
    vote from this browser was attached to (``remembered``), then a search for the
    article's title. Raises FeedbackError for an event other than helpful / not_helpful.
    """
    if event not in VOTE_EVENTS:
        raise FeedbackError("event", f"{event!r} is not one of {', '.join(VOTE_EVENTS)}")
    for candidate in (context, remembered):
        if candidate is None:
            continue
        status = _store(service, article, event, candidate, client)
        if status is not None:
            return _outcome(service, article, event, status, candidate, None,
                            client, alternatives)
    response = None
    choices: tuple[dict[str, Any], ...] = (
        {}, {"language": article.language, "category": article.category})
    for filters in choices:
        response = service.search(article.title, channel="faq", client=client,
                                  k=service.settings.faq_results, synthetic=True, **filters)
        if any(r.article.id == article.id for r in response.results):
            made = SearchContext(response.search_id, token=response.feedback_token)
            status = _store(service, article, event, made, client)
            return _outcome(service, article, event, status or FAILED, made,
                            response, client, alternatives)
    log.warning("vote on %s not stored: no search for its title shows it", article.id)
    return _outcome(service, article, event, FAILED, None, response, client, alternatives)


def _store(
    service: SearchService, article: Article, event: str, context: SearchContext, client: str
) -> str | None:
    """Store the vote on one search: stored, duplicate, failed, or None if it does not fit."""
    try:
        service.record_feedback(context.search_id, article.id, event, context.position,
                                channel="faq", client=client, token=context.token)
    except DuplicateFeedbackError:
        return DUPLICATE
    except FeedbackError as exc:
        log.info("vote on %s does not fit search %s: %s", article.id, context.search_id, exc)
        return None
    except FeedbackStoreError as exc:
        log.error("vote on %s not stored: %s", article.id, exc)
        return FAILED
    return STORED


def _outcome(
    service: SearchService, article: Article, event: str, status: str,
    context: SearchContext | None, response: SearchResponse | None, client: str, limit: int,
) -> VoteOutcome:
    """Return the outcome, with alternatives to the article when the vote was "not helpful"."""
    attached = context if context is not None and status in (STORED, DUPLICATE) else None
    search_id, token = (attached.search_id, attached.token) if attached else (None, None)
    if event != "not_helpful":
        return VoteOutcome(event, status, search_id, token=token)
    found: list[Alternative] = []
    if response is None and attached is not None:
        found = _logged_alternatives(service, attached)
    elif response is not None:
        found = _response_alternatives(response)
    found = [a for a in found if family(a.article) != family(article)]
    if not found:
        response = service.search(article.title, channel="faq", client=client,
                                  k=service.settings.faq_results)
        found = [a for a in _response_alternatives(response)
                 if family(a.article) != family(article)]
    return VoteOutcome(event, status, search_id, tuple(found[:limit]), token)


def _response_alternatives(response: SearchResponse) -> list[Alternative]:
    """Return the results of a search as alternatives (their links carry its context)."""
    return [Alternative(r.article, response.search_id, position, r.hit.probability,
                        response.feedback_token)
            for position, r in enumerate(response.results, start=1)]


def _logged_alternatives(service: SearchService, context: SearchContext) -> list[Alternative]:
    """Return the public articles a logged search showed, in their order (none if unknown)."""
    search_id = context.search_id
    try:
        logged = service.feedback.get_search(search_id)
    except FeedbackStoreError as exc:
        log.warning("search %s cannot be read: %s", search_id, exc)
        return []
    if logged is None:
        return []
    found = []
    for shown in sorted(logged.results, key=lambda r: r.position):
        try:
            article = service.article(shown.article_id)
        except ArticleNotFoundError:
            continue
        found.append(Alternative(article, search_id, shown.position, shown.probability,
                                 context.token))
    return found
