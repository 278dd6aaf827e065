"""How sessions end: FAQ visits (self-service or a callback) and chatbot conversations.

A **FAQ visit** is the searches one client made on the FAQ page with at most
``VISIT_GAP`` (30 minutes) between one and the next; it lasts from its first search to 30
minutes after its last. It **ended helpful** when the same client voted an article helpful
(or resolved) on the FAQ page within that time; it led to a **contact request** when a
callback request was sent within that time from one of its searches (the request's
context ``search: <query>`` starts like one of the visit's queries) or from an article one
of its searches showed (``article: <id>``). A visit is **self-service** unless it led to a
contact request. A callback request that fits no visit (the form opened directly, or a
visit of searches older than the period) is counted as unmatched.

A **bot conversation** is one recorded start (:mod:`kbsearch.stores.handoffs`); it is
self-service unless it was handed to a human.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kbsearch.learning.gaps import normal_text
from kbsearch.stores.callbacks import StoredCallback
from kbsearch.stores.feedback import FeedbackEvent
from kbsearch.stores.handoffs import BotHandoff, BotStart

VISIT_GAP = 30 * 60.0
POSITIVE = frozenset({"helpful", "resolved"})


@dataclass(frozen=True)
class VisitSearch:
    """What a visit needs of one search: when, the query and the articles it showed."""

    search_id: str
    created: float
    client: str
    query: str
    articles: tuple[str, ...]


@dataclass(frozen=True)
class Visit:
    """The FAQ searches of one client close together in time."""

    client: str
    start: float
    last: float
    searches: tuple[VisitSearch, ...]

    @property
    def end(self) -> float:
        """Return when the visit counts as over: VISIT_GAP after its last search."""
        return self.last + VISIT_GAP


@dataclass(frozen=True)
class ChannelOutcome:
    """How the sessions of one channel ended; None where a measure does not apply.

    FAQ: visits, self-service (no contact request), ended helpful, callbacks (visits with a
    callback request). Bot: conversations, self-service (no hand-off), hand-offs.
    """

    channel: str
    sessions: int
    self_service: int
    self_service_rate: float | None
    ended_helpful: int | None
    ended_helpful_rate: float | None
    handoffs: int | None
    handoff_rate: float | None
    callbacks: int | None
    callback_rate: float | None


def rate(part: int, whole: int) -> float | None:
    """Return part / whole, or None when whole is 0."""
    return part / whole if whole else None


def visits(searches: Iterable[VisitSearch], gap: float = VISIT_GAP) -> list[Visit]:
    """Group FAQ searches into visits: per client, at most ``gap`` seconds apart.

    Searches without a client each make a visit of their own. Visits come by start time.
    """
    by_client: dict[str, list[VisitSearch]] = {}
    alone: list[Visit] = []
    for search in searches:
        if search.client:
            by_client.setdefault(search.client, []).append(search)
        else:
            alone.append(Visit("", search.created, search.created, (search,)))
    found = list(alone)
    for client, rows in by_client.items():
        rows.sort(key=lambda s: (s.created, s.search_id))
        current = [rows[0]]
        for search in rows[1:]:
            if search.created - current[-1].created > gap:
                found.append(Visit(client, current[0].created, current[-1].created,
                                   tuple(current)))
                current = []
            current.append(search)
        found.append(Visit(client, current[0].created, current[-1].created, tuple(current)))
    found.sort(key=lambda v: (v.start, v.client, v.searches[0].search_id))
    return found


def from_visit(callback: StoredCallback, visit: Visit) -> bool:
    """Whether a callback request was sent during a visit from one of its searches or results."""
    if not visit.start <= callback.created < visit.end:
        return False
    context = callback.request.context
    if context.startswith("search: "):
        asked = normal_text(context.removeprefix("search: "))
        return bool(asked) and any(normal_text(s.query).startswith(asked) for s in visit.searches)
    if context.startswith("article: "):
        article_id = context.removeprefix("article: ").strip()
        return any(article_id in s.articles for s in visit.searches)
    return False


def match_callbacks(found: Sequence[Visit], callbacks: Iterable[StoredCallback]
                    ) -> tuple[set[int], int]:
    """Return the indexes of the visits that led to a callback request, and how many fit none.

    A request goes to the latest-starting visit it fits. ``found`` must be sorted by start
    (as :func:`visits` returns them).
    """
    starts = [visit.start for visit in found]
    longest = max((visit.end - visit.start for visit in found), default=0.0)
    matched: set[int] = set()
    unmatched = 0
    for callback in callbacks:
        i = bisect.bisect_right(starts, callback.created) - 1
        while i >= 0 and starts[i] >= callback.created - longest:
            if from_visit(callback, found[i]):
                matched.add(i)
                break
            i -= 1
        else:
            unmatched += 1
    return matched, unmatched


def ended_helpful(found: Sequence[Visit], events: Iterable[FeedbackEvent]) -> set[int]:
    """Return the indexes of the visits in which their client voted helpful or resolved."""
    votes: dict[str, list[float]] = {}
    for event in events:
        if event.channel == "faq" and event.event in POSITIVE and event.client:
            votes.setdefault(event.client, []).append(event.created)
    for times in votes.values():
        times.sort()
    helpful = set()
    for i, visit in enumerate(found):
        times = votes.get(visit.client, [])
        first = bisect.bisect_left(times, visit.start)
        if first < len(times) and times[first] < visit.end:
            helpful.add(i)
    return helpful


def faq_outcome(found: Sequence[Visit], events: Iterable[FeedbackEvent],
                callbacks: Iterable[StoredCallback]) -> tuple[ChannelOutcome, int]:
    """Return how the FAQ visits ended, and the number of callback requests that fit none."""
    contacted, unmatched = match_callbacks(found, callbacks)
    helpful = ended_helpful(found, events)
    total = len(found)
    served = total - len(contacted)
    return ChannelOutcome(
        channel="faq", sessions=total, self_service=served,
        self_service_rate=rate(served, total), ended_helpful=len(helpful),
        ended_helpful_rate=rate(len(helpful), total), handoffs=None, handoff_rate=None,
        callbacks=len(contacted), callback_rate=rate(len(contacted), total),
    ), unmatched


def bot_outcome(starts: Sequence[BotStart], handoffs: Sequence[BotHandoff]) -> ChannelOutcome:
    """Return how the chatbot conversations started in a period ended."""
    total = len(starts)
    served = max(total - len(handoffs), 0)
    return ChannelOutcome(
        channel="bot", sessions=total, self_service=served,
        self_service_rate=rate(served, total), ended_helpful=None, ended_helpful_rate=None,
        handoffs=len(handoffs), handoff_rate=rate(len(handoffs), total), callbacks=None,
        callback_rate=None,
    )
