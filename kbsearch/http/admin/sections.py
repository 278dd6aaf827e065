"""What each section of the dashboard shows: one small function per section.

Each function reads what its section needs and returns a frozen record that its partial
template (``templates/admin/_<section>.html``) renders. A part that fails (a store that
cannot be read) becomes a problem shown in its own section; the rest of the dashboard
still renders.

The report, its content gaps and the stale and near-duplicate articles come from the same
functions as ``kbsearch report``, ``kbsearch gaps`` and ``kbsearch check``
(:mod:`kbsearch.learning.report`, :mod:`kbsearch.learning.gaps`,
:mod:`kbsearch.learning.checks`), so the dashboard and the command line always agree.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from kbsearch.errors import CallbackStoreError, ConfigError, IndexNotFoundError
from kbsearch.http.context import Components
from kbsearch.index.reindex import ReindexJob
from kbsearch.learning.checks import near_duplicates, section_vectors, stale_articles
from kbsearch.learning.report import Report, build_report
from kbsearch.learning.report_render import CHART_TITLES, report_charts
from kbsearch.ranking.versions import VersionInfo
from kbsearch.stores.callbacks import StoredCallback

CALLBACK_LIMIT = 100
VERSIONS_SHOWN = 30
# report entries of a weights version that compare it with its parent: key, name, better
GATES: tuple[tuple[str, str, str], ...] = (
    ("held_out_dcg", "held-out feedback DCG", "higher"),
    ("judged_ndcg@10", "judged nDCG@10", "higher"),
    ("ece_cross_fitted", "cross-fitted ECE", "lower"),
)


# The report, content gaps, stale and near-duplicate articles (other parts of issue 12)


@dataclass(frozen=True)
class Figure:
    """One figure of the report: what it is and its value, as shown."""

    label: str
    value: str


@dataclass(frozen=True)
class Chart:
    """One chart of the report: a title and the chart as inline SVG (trusted markup).

    The SVG must style itself with presentation attributes (``fill=``), not ``style=``
    attributes or elements, which the dashboard's Content-Security-Policy blocks, and must
    escape every text it draws from data (queries, titles).
    """

    title: str
    svg: Markup


@dataclass(frozen=True)
class ReportSection:
    """The live report: its figures and charts, or why there is none."""

    available: bool
    note: str
    figures: tuple[Figure, ...] = ()
    charts: tuple[Chart, ...] = ()


PERIODS: tuple[int, ...] = (1, 7, 30, 90)  # days the dashboard's report can cover


def period_report(parts: Components, days: int, now: float) -> Report | None:
    """Return the report of the last ``days`` days, or None before the first index build.

    Stale articles are left to the checks section, which shows them with their dates.
    """
    try:
        titles = {a.id: a.title for a in parts.service.articles("internal")}
    except IndexNotFoundError:
        return None
    return build_report(
        parts.service.feedback, parts.bot.handoffs, parts.callbacks,
        gap_below=parts.settings.gap_below, gap_min_searches=parts.settings.gap_min_searches,
        since=now - days * 86400.0, until=now, titles=titles, now=now)


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def report_section(report: Report | None, days: int) -> ReportSection:
    """Return the key figures and the charts of a report (``kbsearch report``)."""
    if report is None:
        return ReportSection(False, "No index has been built yet: press Reindex.")
    total = report.total
    outcome = {o.channel: o for o in report.outcomes}
    faq, bot = outcome.get("faq"), outcome.get("bot")
    figures = (
        Figure("Searches", str(total.searches)),
        Figure("Distinct clients", str(total.clients)),
        Figure("Click-through rate", _rate(total.click_through_rate)),
        Figure("No-click rate", _rate(total.no_click_rate)),
        Figure("Average click position", "–" if total.average_click_position is None
               else f"{total.average_click_position:.1f}"),
        Figure("Low confidence", _rate(total.low_confidence_rate)),
        Figure("FAQ self-service", _rate(faq.self_service_rate if faq else None)),
        Figure("Bot hand-off rate", _rate(bot.handoff_rate if bot else None)),
        Figure("Callback requests", str(report.callbacks)),
    )
    charts = tuple(Chart(CHART_TITLES.get(name, name), Markup(svg))  # noqa: S704 - escaped SVG
                   for name, svg in report_charts(report).items())
    return ReportSection(True, f"The last {days} day{'s' if days != 1 else ''}; "
                               "kbsearch report --format html gives the whole report.",
                         figures, charts)


@dataclass(frozen=True)
class Gap:
    """A group of searches that found no good answer: a label, how many, examples."""

    label: str
    searches: int
    examples: tuple[str, ...]
    best_probability: float | None = None
    clients: int = 0
    closest: str = ""


@dataclass(frozen=True)
class GapsSection:
    """Content gaps: what people search for without a good answer."""

    available: bool
    note: str
    gaps: tuple[Gap, ...] = ()


def gaps_section(report: Report | None) -> GapsSection:
    """Return the content gaps of the report's period (``kbsearch gaps``)."""
    if report is None:
        return GapsSection(False, "No index has been built yet: press Reindex.")
    gaps = tuple(
        Gap(f"#{group.number}: {group.examples[0] if group.examples else ''}", group.searches,
            group.examples, group.closest.mean_probability if group.closest else None,
            group.clients, group.closest.title if group.closest else "")
        for group in report.gaps)
    return GapsSection(True, "Draft an article for a group with: kbsearch gaps draft NUMBER "
                             "--since the same day.", gaps)


@dataclass(frozen=True)
class StaleArticle:
    """An article past its review date, or without one (``due`` and ``days_over`` empty)."""

    id: str
    title: str
    due: str
    days_over: int | None


@dataclass(frozen=True)
class DuplicatePair:
    """Two articles that say nearly the same, and the sections that overlap most."""

    first: str
    second: str
    similarity: float
    sections: str = ""


@dataclass(frozen=True)
class ChecksSection:
    """Stale and near-duplicate articles."""

    available: bool
    note: str
    stale: tuple[StaleArticle, ...] = ()
    duplicates: tuple[DuplicatePair, ...] = ()


def checks_section(parts: Components, today: dt.date) -> ChecksSection:
    """Return the stale and near-duplicate articles of the index in use (``kbsearch check``).

    Internal articles are included; the section vectors come from the index build, so no
    model is loaded.
    """
    try:
        articles = parts.service.articles("internal")
    except IndexNotFoundError:
        return ChecksSection(False, "No index has been built yet: press Reindex.")
    stale = tuple(
        StaleArticle(s.article.id, s.article.title,
                     s.review_by.isoformat() if s.review_by else "", s.days_overdue)
        for s in stale_articles(articles, today))
    sections = section_vectors(articles, parts.settings.index, lambda: parts.service.embedder,
                               parts.settings.chunk_tokens)
    duplicates = tuple(
        DuplicatePair(pair.first.id, pair.second.id, pair.similarity,
                      "; ".join(f"{o.first_heading} ~ {o.second_heading}"
                                for o in pair.overlaps[:2]))
        for pair in near_duplicates(articles, sections.vectors,
                                    parts.settings.check_duplicate_similarity))
    return ChecksSection(True, f"As kbsearch check finds them; near-duplicates: cosine of the "
                               f"closest sections at least "
                               f"{parts.settings.check_duplicate_similarity}.",
                         stale, duplicates)


# Callback requests, weights versions, the index: this package's own


@dataclass(frozen=True)
class CallbacksSection:
    """The callback requests with one status (or all), newest first."""

    shown: str
    callbacks: tuple[StoredCallback, ...] = ()
    problem: str | None = None


def callbacks_section(parts: Components, shown: str) -> CallbacksSection:
    """Return the newest callback requests of a status (``all``: every status)."""
    try:
        found = parts.callbacks.recent(CALLBACK_LIMIT, None if shown == "all" else shown)
    except CallbackStoreError:
        return CallbacksSection(shown, problem="The callback requests cannot be read right "
                                               "now; the server log says why.")
    return CallbacksSection(shown, tuple(found))


@dataclass(frozen=True)
class Gate:
    """One offline check of a weights version against the version it was trained from."""

    name: str
    current: float | None
    new: float | None
    better: str

    @property
    def passed(self) -> bool | None:
        """Return whether the new figure is at least as good (None if one is missing)."""
        if self.current is None or self.new is None:
            return None
        return self.new >= self.current if self.better == "higher" else self.new <= self.current


@dataclass(frozen=True)
class WeightsVersion:
    """A weights version as the dashboard lists it: what list says, and its gates."""

    info: VersionInfo
    gates: tuple[Gate, ...]


@dataclass(frozen=True)
class WeightsSection:
    """The weights versions, newest first, and whether a rollback is possible."""

    versions: tuple[WeightsVersion, ...] = ()
    hidden: int = 0
    can_roll_back: bool = False
    pinned: str | None = None
    problem: str | None = None


def gates(report: Any) -> tuple[Gate, ...]:
    """Return the offline checks recorded in a version's training report."""
    if not isinstance(report, dict):
        return ()
    found = []
    for key, name, better in GATES:
        figures = report.get(key)
        if isinstance(figures, dict):
            found.append(Gate(name, _number(figures.get("current")),
                              _number(figures.get("new")), better))
    return tuple(found)


def _number(value: Any) -> float | None:
    """Return a figure as a float (None when it is missing or not a number)."""
    return float(value) if isinstance(value, int | float) else None


def weights_section(parts: Components) -> WeightsSection:
    """Return the weights versions with their gate results, newest first."""
    store = parts.service.weights
    pinned = str(parts.settings.weights) if parts.settings.weights else None
    try:
        infos = store.list()
        shown = list(reversed(infos))[:VERSIONS_SHOWN]  # the shipped default is oldest
        versions = tuple(
            WeightsVersion(info, gates(store.document(info.version).get("report")))
            for info in shown)
        history = store.history()
    except ConfigError as exc:
        return WeightsSection(pinned=pinned, problem=str(exc))
    return WeightsSection(versions, len(infos) - len(shown), bool(history), pinned)


@dataclass(frozen=True)
class IndexSection:
    """The build that answers searches, and the latest reindex job."""

    version: str | None
    articles: int | None
    created: str | None
    job: ReindexJob | None
    problem: str | None = None


def index_section(parts: Components) -> IndexSection:
    """Return the current index build and the latest reindex job."""
    job = parts.reindex.latest()
    try:
        index = parts.service.index()
    except IndexNotFoundError as exc:
        return IndexSection(None, None, None, job, str(exc))
    return IndexSection(index.version, len(index.articles),
                        str(index.manifest.get("created", "")), job)
