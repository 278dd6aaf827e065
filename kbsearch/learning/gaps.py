"""Content gaps: the searches the knowledge base did not answer, grouped by meaning.

A search (one a person typed: synthetic ones are left out) is **unanswered** when its best
result's probability stayed below ``gap_below``, or when a result got ``not_helpful`` or
``escalated``, or when the chatbot handed the conversation to a human after it; a
``helpful`` or ``resolved`` event on the same search overrides all three. The stored query
vectors of the unanswered searches are grouped by **complete-linkage agglomerative
clustering** on cosine distance, cut at ``GAP_DISTANCE``: every two queries in a group are
at least ``1 - GAP_DISTANCE`` similar, so a group never drifts from one need to another
through a chain of neighbours. Groups with at least ``gap_min_searches`` searches are kept
and ranked by distinct clients, then searches; group 1 is the top of the editors' to-do
list. Everything is deterministic: the same searches give the same groups and numbers.
The log does not say which embedding model made a vector: after changing
``KBSEARCH_MODEL`` to one of the same size, look at the gaps ``--since`` the change.

Why 0.14 (``scripts/gap_threshold.py``, multilingual-e5-small): on 60 questions that the
sample knowledge base does not answer (``tests/data/gap_queries.tsv``, ten needs asked six
ways) the groups are 95 % pure; on stackfaq_en (1,249 rephrasings of 125 needs) 79 %, and
91-94 % on samples of 30 of its needs. Lower thresholds split needs into more, smaller
groups; higher ones mix needs (stackfaq: 54 % pure at 0.16). Average linkage was tried too:
its good threshold moves with the number of queries (0.10 for 1,249, 0.15 for 60).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from kbsearch.content.analysis import detect_language
from kbsearch.stores.feedback import FeedbackEvent, FeedbackStore, SearchLog
from kbsearch.stores.handoffs import HandoffStore

GAP_DISTANCE = 0.14
MAX_CLUSTERED = 4000  # distinct queries clustered at once (about 6 s on one core)
MAX_EXAMPLES = 5
NEGATIVE = frozenset({"not_helpful", "escalated"})
POSITIVE = frozenset({"helpful", "resolved"})
REASON_CODES = ("low_probability", "negative_feedback", "handoff")


@dataclass(frozen=True)
class ClosestArticle:
    """The article that came closest to a group: most often ranked first, and how likely."""

    article_id: str
    title: str
    top_searches: int
    mean_probability: float


@dataclass(frozen=True)
class GapGroup:
    """One group of unanswered searches that share a meaning.

    ``number`` is its rank (1 = most distinct clients); ``examples`` are the stored (redacted)
    queries, most common first; ``channels``, ``languages`` and ``reasons`` count searches,
    most first; ``search_ids`` are the group's searches, oldest first.
    """

    number: int
    searches: int
    clients: int
    examples: tuple[str, ...]
    channels: tuple[tuple[str, int], ...]
    languages: tuple[tuple[str, int], ...]
    reasons: tuple[tuple[str, int], ...]
    closest: ClosestArticle | None
    first_seen: float
    last_seen: float
    search_ids: tuple[str, ...] = ()

    @property
    def language(self) -> str:
        """Return the language most of the group's searches are in."""
        return self.languages[0][0] if self.languages else "de"

    def to_json(self) -> dict[str, Any]:
        """Return the group as JSON-ready data (without its search ids; times in ISO 8601)."""
        closest = self.closest
        return {
            "number": self.number, "searches": self.searches, "clients": self.clients,
            "examples": list(self.examples), "channels": dict(self.channels),
            "languages": dict(self.languages), "reasons": dict(self.reasons),
            "closest": None if closest is None else {
                "article_id": closest.article_id, "title": closest.title,
                "top_searches": closest.top_searches,
                "mean_probability": round(closest.mean_probability, 4)},
            "first_seen": iso_time(self.first_seen), "last_seen": iso_time(self.last_seen),
        }


def iso_time(at: float | None) -> str | None:
    """Return unix seconds as ISO 8601 in UTC (None stays None)."""
    if at is None:
        return None
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds")


def utc_day(at: float) -> str:
    """Return the UTC day of a time as YYYY-MM-DD."""
    return dt.datetime.fromtimestamp(at, dt.UTC).date().isoformat()


@dataclass(frozen=True)
class Unanswered:
    """A search the knowledge base did not answer, and why (codes of REASON_CODES)."""

    search: SearchLog
    reasons: tuple[str, ...]


def best_probability(search: SearchLog) -> float:
    """Return the probability of a search's first result (0 when it showed none)."""
    return min(search.results, key=lambda r: r.position).probability if search.results else 0.0


def normal_text(query: str) -> str:
    """Return a query folded for counting: lower case, single spaces."""
    return " ".join(query.casefold().split())


def unanswered(
    searches: Iterable[SearchLog], events: Iterable[FeedbackEvent],
    handoff_search_ids: Collection[str], below: float,
) -> list[Unanswered]:
    """Return the searches people typed that stayed unanswered, in the order given.

    Unanswered: best probability below ``below``, a not_helpful or escalated event, or a bot
    hand-off after it; a helpful or resolved event on the search overrides all three.
    """
    outcomes: dict[str, set[str]] = {}
    for event in events:
        outcomes.setdefault(event.search_id, set()).add(event.event)
    found = []
    for search in searches:
        reasons = unanswered_reasons(search, outcomes.get(search.search_id, set()),
                                     handoff_search_ids, below)
        if reasons:
            found.append(Unanswered(search, reasons))
    return found


def unanswered_reasons(search: SearchLog, events: Collection[str],
                       handoff_search_ids: Collection[str], below: float) -> tuple[str, ...]:
    """Return why a search stayed unanswered (REASON_CODES), or () when it did not.

    ``events`` are the kinds of events on the search; a synthetic search is never counted.
    """
    if search.synthetic or POSITIVE & set(events):
        return ()
    return tuple(code for code, applies in zip(REASON_CODES, (
        best_probability(search) < below, bool(NEGATIVE & set(events)),
        search.search_id in handoff_search_ids), strict=True) if applies)


def cluster(vectors: np.ndarray, distance: float = GAP_DISTANCE) -> np.ndarray:
    """Return a group label per row: complete linkage on cosine distance, cut at distance.

    Labels are 0, 1, ... in the order of each group's first row, so the same rows in the
    same order always get the same labels.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(vectors) == 0:
        return np.zeros(0, dtype=int)
    if len(vectors) == 1:
        return np.zeros(1, dtype=int)
    unit = _unit(vectors)
    raw = fcluster(linkage(unit, method="complete", metric="cosine"), t=distance,
                   criterion="distance")
    first: dict[int, int] = {}
    return np.array([first.setdefault(int(label), len(first)) for label in raw], dtype=int)


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Return the rows scaled to length 1 (zero rows stay zero), as float64."""
    matrix = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def join_groups(rest: np.ndarray, clustered: np.ndarray, labels: np.ndarray,
                distance: float = GAP_DISTANCE, chunk: int = 512) -> np.ndarray:
    """Return for each row of rest the group it fits in by complete linkage, or -1.

    A row fits a group when it is within ``distance`` of every member; of several, the one
    whose farthest member is nearest wins (the lower label on a tie).
    """
    if len(rest) == 0 or len(clustered) == 0:
        return np.full(len(rest), -1, dtype=int)
    order = np.argsort(labels, kind="stable")
    members = _unit(clustered)[order]
    starts = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0])
    group_of = labels[order][starts]
    found = []
    for begin in range(0, len(rest), chunk):
        far = 1.0 - _unit(rest[begin:begin + chunk]) @ members.T
        worst = np.maximum.reduceat(far, starts, axis=1)
        best = np.argmin(worst, axis=1)
        fits = worst[np.arange(len(best)), best] <= distance
        found.append(np.where(fits, group_of[best], -1))
    return np.concatenate(found)


def _group_labels(vectors: Sequence[np.ndarray], distance: float) -> list[int]:
    """Return a group label per distinct query (most asked first), -1 for none.

    The first MAX_CLUSTERED are clustered together; each later one joins the group it fits
    (:func:`join_groups`), and those that fit none are clustered among themselves, again
    MAX_CLUSTERED at a time. Vectors of different sizes (another model) are never mixed.
    """
    labels = [-1] * len(vectors)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, vector in enumerate(vectors):
        by_shape.setdefault(vector.shape, []).append(i)
    offset = 0
    for rows in by_shape.values():
        head, rest = rows[:MAX_CLUSTERED], rows[MAX_CLUSTERED:]
        matrix = np.stack([vectors[i] for i in head])
        head_labels = cluster(matrix, distance)
        for i, label in zip(head, head_labels, strict=True):
            labels[i] = offset + int(label)
        if rest:
            joined = join_groups(np.stack([vectors[i] for i in rest]), matrix, head_labels,
                                 distance)
            for i, label in zip(rest, joined, strict=True):
                labels[i] = offset + int(label) if label >= 0 else -1
            rest = [i for i in rest if labels[i] < 0]
        offset += int(head_labels.max()) + 1
        for begin in range(0, len(rest), MAX_CLUSTERED):
            batch = rest[begin:begin + MAX_CLUSTERED]
            batch_labels = cluster(np.stack([vectors[i] for i in batch]), distance)
            for i, label in zip(batch, batch_labels, strict=True):
                labels[i] = offset + int(label)
            offset += int(batch_labels.max()) + 1
    return labels


def _closest(searches: Sequence[SearchLog], titles: Mapping[str, str]) -> ClosestArticle | None:
    """Return the article most often ranked first in the searches, with its mean probability.

    Ties go to the higher mean probability, then the smaller id.
    """
    firsts: dict[str, list[float]] = {}
    for search in searches:
        if search.results:
            top = min(search.results, key=lambda r: r.position)
            firsts.setdefault(top.article_id, []).append(top.probability)
    if not firsts:
        return None
    article_id, probabilities = min(
        firsts.items(), key=lambda item: (-len(item[1]), -float(np.mean(item[1])), item[0]))
    return ClosestArticle(article_id, titles.get(article_id, ""), len(probabilities),
                          float(np.mean(probabilities)))


def _counted(values: Iterable[str]) -> tuple[tuple[str, int], ...]:
    """Return (value, count) pairs, most first, then by value."""
    return tuple(sorted(Counter(values).items(), key=lambda item: (-item[1], item[0])))


def _examples(searches: Sequence[SearchLog]) -> tuple[str, ...]:
    """Return up to MAX_EXAMPLES distinct queries, most common first, each as most often typed."""
    spellings: dict[str, Counter[str]] = {}
    for search in searches:
        spellings.setdefault(normal_text(search.query), Counter())[search.query.strip()] += 1
    ranked = sorted(spellings.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    return tuple(min(forms.items(), key=lambda f: (-f[1], f[0]))[0]
                 for _, forms in ranked[:MAX_EXAMPLES])


def search_language(search: SearchLog) -> str:
    """Return the language a search asked for, else the one its query is written in."""
    return search.language or detect_language(search.query)


def _group(members: Sequence[Unanswered], titles: Mapping[str, str]) -> GapGroup:
    """Return the unnumbered GapGroup of some unanswered searches."""
    searches = sorted((m.search for m in members), key=lambda s: (s.created, s.search_id))
    return GapGroup(
        number=0, searches=len(searches),
        clients=len({s.client for s in searches if s.client}),
        examples=_examples(searches),
        channels=_counted(s.channel for s in searches),
        languages=_counted(search_language(s) for s in searches),
        reasons=_counted(code for m in members for code in m.reasons),
        closest=_closest(searches, titles),
        first_seen=searches[0].created, last_seen=searches[-1].created,
        search_ids=tuple(s.search_id for s in searches),
    )


def group_unanswered(
    found: Sequence[Unanswered], min_searches: int, distance: float = GAP_DISTANCE,
    titles: Mapping[str, str] | None = None,
) -> list[GapGroup]:
    """Group unanswered searches by meaning; keep groups of min_searches; rank and number them.

    Identical queries (ignoring case and spaces) are one point, placed by their latest
    vector; the most asked distinct queries are clustered first (MAX_CLUSTERED).
    """
    by_text: dict[str, list[Unanswered]] = {}
    for item in found:
        by_text.setdefault(normal_text(item.search.query), []).append(item)
    texts = sorted(by_text, key=lambda t: (-len(by_text[t]), t))
    vectors = [max(by_text[t], key=lambda u: (u.search.created, u.search.search_id))
               .search.query_vector for t in texts]
    members: dict[int, list[Unanswered]] = {}
    for text, label in zip(texts, _group_labels(vectors, distance), strict=True):
        if label >= 0:
            members.setdefault(label, []).extend(by_text[text])
    groups = [_group(items, titles or {}) for items in members.values()
              if len(items) >= min_searches]
    groups.sort(key=lambda g: (-g.clients, -g.searches, g.examples, g.first_seen))
    return [replace(g, number=n) for n, g in enumerate(groups, start=1)]


def find_gaps(
    searches: Iterable[SearchLog], events: Iterable[FeedbackEvent],
    handoff_search_ids: Collection[str], below: float, min_searches: int,
    distance: float = GAP_DISTANCE, titles: Mapping[str, str] | None = None,
) -> list[GapGroup]:
    """Return the content gaps of a search log, numbered from 1 (most distinct clients).

    ``titles`` names the articles (id → title) for the closest article of each group.
    """
    found = unanswered(searches, events, handoff_search_ids, below)
    return group_unanswered(found, min_searches, distance, titles)


def gaps_in(
    feedback: FeedbackStore, handoffs: HandoffStore, *, below: float, min_searches: int,
    since: float | None = None, until: float | None = None,
    titles: Mapping[str, str] | None = None,
) -> list[GapGroup]:
    """Return the content gaps of the searches made since <= created < until in the stores.

    Events and hand-offs count from ``since`` on, whenever they came.
    """
    events = list(feedback.events(since=since))
    handoff_ids = {h.search_id for h in handoffs.handoffs(since) if h.search_id}
    return find_gaps(feedback.searches(since, until), events, handoff_ids, below,
                     min_searches, titles=titles)
