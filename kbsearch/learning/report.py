"""The analytics report for team leads and editors: ``build_report(...) -> Report``.

Every measure is over the searches people made in a period (``since <= created < until``;
synthetic searches, which no person typed, are left out) and the events on them, whenever
those came; the README's "Analytics and content gaps" section defines each one. The report
is plain frozen dataclasses, so the command line and the dashboard render the same thing:
``Report.to_json()``, and :mod:`kbsearch.learning.report_render` for text, HTML and charts.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from kbsearch.learning.article_checks import StaleArticle
from kbsearch.learning.gaps import (
    POSITIVE,
    GapGroup,
    Unanswered,
    best_probability,
    group_unanswered,
    iso_time,
    normal_text,
    search_language,
    unanswered_reasons,
    utc_day,
)
from kbsearch.learning.outcomes import (
    ChannelOutcome,
    VisitSearch,
    bot_outcome,
    faq_outcome,
    rate,
    visits,
)
from kbsearch.stores.callbacks import CallbackStore
from kbsearch.stores.feedback import (
    CHANNELS,
    FeedbackEvent,
    FeedbackStore,
    SearchLog,
    ShownResult,
)
from kbsearch.stores.handoffs import HandoffStore

BANDS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
TOP_QUERIES = 20
MAX_CALLBACKS = 100_000
NO_CLICKS = frozenset({"bot"})  # the bot shows its answer in the chat: nothing to click
NEGATIVE = frozenset({"not_helpful", "escalated"})


@dataclass(frozen=True)
class SearchStats:
    """Search measures of one channel, one language, or all searches (``key`` "all").

    Rates are None where they cannot be told: no searches, or a channel that never
    reports clicks (the bot).
    """

    key: str
    searches: int
    clients: int
    clicked: int
    click_through_rate: float | None
    no_click: int
    no_click_rate: float | None
    average_click_position: float | None
    low_confidence: int
    low_confidence_rate: float | None


@dataclass(frozen=True)
class DayCount:
    """The searches of one channel on one day (UTC, ``YYYY-MM-DD``)."""

    day: str
    channel: str
    searches: int


@dataclass(frozen=True)
class ArticleFeedback:
    """Votes on one article: helpful or resolved against not helpful or escalated."""

    article_id: str
    title: str
    helpful: int
    not_helpful: int
    helpful_rate: float


@dataclass(frozen=True)
class CodeCount:
    """How often a code (a hand-off reason) came up, and its share of the whole."""

    code: str
    count: int
    share: float


@dataclass(frozen=True)
class TopQuery:
    """A query as people typed it most often, with how it fared."""

    query: str
    searches: int
    clients: int
    click_through_rate: float | None
    mean_best_probability: float


@dataclass(frozen=True)
class CalibrationBand:
    """First results whose probability fell in [low, high), and how many were marked helpful."""

    low: float
    high: float
    results: int
    mean_probability: float | None
    marked: int
    observed_rate: float | None


@dataclass(frozen=True)
class StaleRow:
    """An article past its review date, or without one (review_by "", days_overdue None)."""

    article_id: str
    title: str
    review_by: str
    days_overdue: int | None


@dataclass(frozen=True)
class Report:
    """Everything the report shows, for one period; ``to_json()`` for programs."""

    generated_at: float
    since: float | None
    until: float | None
    gap_below: float
    total: SearchStats
    channels: tuple[SearchStats, ...]
    languages: tuple[SearchStats, ...]
    days: tuple[DayCount, ...]
    articles: tuple[ArticleFeedback, ...]
    outcomes: tuple[ChannelOutcome, ...]
    handoff_reasons: tuple[CodeCount, ...]
    callbacks: int
    unmatched_callbacks: int
    top_queries: tuple[TopQuery, ...]
    calibration: tuple[CalibrationBand, ...]
    gaps: tuple[GapGroup, ...] = ()
    stale: tuple[StaleRow, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data; times as ISO 8601 in UTC."""
        data = asdict(self)
        for name in ("generated_at", "since", "until"):
            data[name] = iso_time(data[name])
        data["gaps"] = [gap.to_json() for gap in self.gaps]
        return data


@dataclass
class _Tally:
    """Running counts for one SearchStats."""

    searches: int = 0
    clients: set[str] = field(default_factory=set)
    clicked: int = 0
    clickable: int = 0
    low: int = 0
    positions: list[int] = field(default_factory=list)

    def add(self, search: SearchLog, positions: Sequence[int], low: bool) -> None:
        """Count one search, the positions of its clicks, and whether its best was low."""
        self.searches += 1
        if search.client:
            self.clients.add(search.client)
        if search.channel not in NO_CLICKS:
            self.clickable += 1
            self.clicked += bool(positions)
            self.positions.extend(positions)
        self.low += low

    def stats(self, key: str) -> SearchStats:
        """Return the SearchStats of what was counted."""
        no_click = self.clickable - self.clicked
        positions = self.positions
        return SearchStats(
            key=key, searches=self.searches, clients=len(self.clients), clicked=self.clicked,
            click_through_rate=rate(self.clicked, self.clickable), no_click=no_click,
            no_click_rate=rate(no_click, self.clickable),
            average_click_position=sum(positions) / len(positions) if positions else None,
            low_confidence=self.low, low_confidence_rate=rate(self.low, self.searches),
        )


def calibration_bands(pairs: Iterable[tuple[float, bool]]) -> tuple[CalibrationBand, ...]:
    """Return the BANDS of (probability, marked helpful or resolved) pairs; 1.0 is in the top."""
    members: list[list[tuple[float, bool]]] = [[] for _ in BANDS[:-1]]
    for probability, marked in pairs:
        band = min(max(bisect.bisect_right(BANDS, probability) - 1, 0), len(members) - 1)
        members[band].append((probability, marked))
    bands = []
    for low, high, rows in zip(BANDS, BANDS[1:], members, strict=False):
        hits = sum(marked for _, marked in rows)
        bands.append(CalibrationBand(
            low, high, len(rows),
            sum(p for p, _ in rows) / len(rows) if rows else None, hits, rate(hits, len(rows))))
    return tuple(bands)


def article_feedback(events: Iterable[FeedbackEvent], titles: Mapping[str, str]
                     ) -> tuple[ArticleFeedback, ...]:
    """Return per article its votes and helpful rate, most votes first, then least helpful."""
    good: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    for event in events:
        if event.event in POSITIVE:
            good[event.article_id] += 1
        elif event.event in NEGATIVE:
            bad[event.article_id] += 1
    rows = [ArticleFeedback(a, titles.get(a, ""), good[a], bad[a], good[a] / (good[a] + bad[a]))
            for a in set(good) | set(bad)]
    rows.sort(key=lambda r: (-(r.helpful + r.not_helpful), r.helpful_rate, r.article_id))
    return tuple(rows)


def reason_counts(reasons: Iterable[Sequence[str]]) -> tuple[CodeCount, ...]:
    """Return how often each code came up, as a share of the hand-offs, most first."""
    rows = list(reasons)
    counted = Counter(code for codes in rows for code in codes)
    return tuple(CodeCount(code, n, n / len(rows)) for code, n in
                 sorted(counted.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True)
class QueryRow:
    """What the top queries need of one search."""

    query: str
    client: str
    channel: str
    clicked: bool
    best_probability: float


def top_queries(rows: Iterable[QueryRow], limit: int = TOP_QUERIES) -> tuple[TopQuery, ...]:
    """Return the most searched queries (folded), each as most often typed, with how it fared.

    Ranked by searches, then distinct clients, then the folded text.
    """
    by_text: dict[str, list[QueryRow]] = {}
    for row in rows:
        by_text.setdefault(normal_text(row.query), []).append(row)
    ranked = sorted(by_text.items(), key=lambda item: (
        -len(item[1]), -len({r.client for r in item[1] if r.client}), item[0]))
    found = []
    for _, members in ranked[:limit]:
        spelling = Counter(r.query.strip() for r in members)
        clickable = [r.clicked for r in members if r.channel not in NO_CLICKS]
        found.append(TopQuery(
            query=min(spelling.items(), key=lambda f: (-f[1], f[0]))[0],
            searches=len(members), clients=len({r.client for r in members if r.client}),
            click_through_rate=rate(sum(clickable), len(clickable)),
            mean_best_probability=sum(r.best_probability for r in members) / len(members),
        ))
    return tuple(found)


def stale_rows(stale: Iterable[StaleArticle]) -> tuple[StaleRow, ...]:
    """Return the report's rows of the articles ``kbsearch check`` finds stale, in its order."""
    return tuple(
        StaleRow(item.article.id, item.article.title,
                 item.review_by.isoformat() if item.review_by else "", item.days_overdue)
        for item in stale)


def build_report(
    feedback: FeedbackStore, handoffs: HandoffStore, callbacks: CallbackStore, *,
    gap_below: float, gap_min_searches: int, since: float | None = None,
    until: float | None = None, titles: Mapping[str, str] | None = None,
    stale: Iterable[StaleArticle] = (), now: float | None = None,
) -> Report:
    """Read the stores for one period and return every measure of the report.

    ``titles`` names articles (id → title); ``stale`` holds the articles past their review
    date or without one, as :func:`kbsearch.learning.checks.stale_articles` finds them.
    """
    titles = titles or {}
    events = list(feedback.events(since=since))
    starts = list(handoffs.starts(since, until))
    since_start = list(handoffs.handoffs(since))  # later hand-offs still end a search of it
    handed = [h for h in since_start if until is None or h.at < until]
    handoff_ids = {h.search_id for h in since_start if h.search_id}
    window = _read_searches(feedback, since, until, events, handoff_ids, gap_below)
    mine = [e for e in events if e.search_id in window.all_ids]
    asked = [c for c in callbacks.recent(MAX_CALLBACKS)
             if (since is None or c.created >= since) and (until is None or c.created < until)]
    faq, unmatched = faq_outcome(visits(window.faq), mine, asked)
    return Report(
        generated_at=time.time() if now is None else now, since=since, until=until,
        gap_below=gap_below, total=window.total.stats("all"),
        channels=tuple(window.channels[c].stats(c)
                       for c in sorted(window.channels, key=_channel_order)),
        languages=tuple(window.languages[lang].stats(lang) for lang in sorted(window.languages)),
        days=tuple(DayCount(day, channel, n) for (day, channel), n in
                   sorted(window.days.items(), key=lambda i: (i[0][0], _channel_order(i[0][1])))),
        articles=article_feedback(mine, titles), outcomes=(faq, bot_outcome(starts, handed)),
        handoff_reasons=reason_counts(h.reasons for h in handed),
        callbacks=len(asked), unmatched_callbacks=unmatched,
        top_queries=top_queries(window.typed),
        calibration=calibration_bands(window.firsts),
        gaps=tuple(group_unanswered(window.unanswered, gap_min_searches, titles=titles)),
        stale=stale_rows(stale),
    )


def _channel_order(channel: str) -> tuple[int, str]:
    """Sort key of channels: in the order of CHANNELS, unknown ones after."""
    return (CHANNELS.index(channel) if channel in CHANNELS else len(CHANNELS), channel)


@dataclass
class _Window:
    """What one pass over a period's searches collects for the report."""

    all_ids: set[str] = field(default_factory=set)
    total: _Tally = field(default_factory=_Tally)
    channels: dict[str, _Tally] = field(default_factory=dict)
    languages: dict[str, _Tally] = field(default_factory=dict)
    days: Counter[tuple[str, str]] = field(default_factory=Counter)
    faq: list[VisitSearch] = field(default_factory=list)
    typed: list[QueryRow] = field(default_factory=list)
    firsts: list[tuple[float, bool]] = field(default_factory=list)
    unanswered: list[Unanswered] = field(default_factory=list)


def _read_searches(feedback: FeedbackStore, since: float | None, until: float | None,
                   events: Sequence[FeedbackEvent], handoff_ids: set[str], gap_below: float
                   ) -> _Window:
    """Go once through the period's searches and collect what the report needs."""
    kinds: dict[str, set[str]] = {}
    clicks: dict[str, list[int]] = {}
    marked: set[tuple[str, str]] = set()
    for event in events:
        kinds.setdefault(event.search_id, set()).add(event.event)
        if event.event == "click" and event.position is not None:
            clicks.setdefault(event.search_id, []).append(event.position)
        if event.event in POSITIVE:
            marked.add((event.search_id, event.article_id))
    window = _Window()
    detected: dict[str, str] = {}
    for search in feedback.searches(since, until):
        window.all_ids.add(search.search_id)
        if search.synthetic:
            continue
        positions = clicks.get(search.search_id, [])
        best = best_probability(search)
        if search.language is None and search.query not in detected:
            detected[search.query] = search_language(search)
        language = search.language or detected[search.query]
        for tally in (window.total, window.channels.setdefault(search.channel, _Tally()),
                      window.languages.setdefault(language, _Tally())):
            tally.add(search, positions, best < gap_below)
        window.days[(utc_day(search.created), search.channel)] += 1
        window.typed.append(QueryRow(search.query, search.client, search.channel,
                                     bool(positions), best))
        if search.channel == "faq":
            window.faq.append(VisitSearch(search.search_id, search.created, search.client,
                                          search.query,
                                          tuple(r.article_id for r in search.results)))
        if search.results:
            top = min(search.results, key=lambda r: r.position)
            window.firsts.append((top.probability,
                                  (search.search_id, top.article_id) in marked))
        reasons = unanswered_reasons(search, kinds.get(search.search_id, set()), handoff_ids,
                                     gap_below)
        if reasons:
            window.unanswered.append(Unanswered(_slim(search), reasons))
    return window


def _slim(search: SearchLog) -> SearchLog:
    """Return a search without its results' features, to keep memory low."""
    results = tuple(ShownResult(r.article_id, r.position, r.probability, ())
                    for r in search.results)
    return replace(search, results=results, feature_names=())
