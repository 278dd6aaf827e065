"""The analytics report as text, as one self-contained HTML page, and its charts alone.

``render_text(report)`` is what ``kbsearch report`` prints; ``render_html(report)`` is a
whole page (inline CSS and SVG, no script, nothing fetched); ``render_html_body(report)``
is the same without the page around it and ``report_charts(report)`` the charts alone
(name → inline SVG), for the dashboard. Everything people typed is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

from kbsearch.learning import charts
from kbsearch.learning.gaps import GapGroup, iso_time
from kbsearch.learning.outcomes import ChannelOutcome
from kbsearch.learning.report import Report, SearchStats

TEXT_ROWS = 10
NUMERIC = re.compile(r"–|-?\d+(\.\d+)?%?")
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem;
       padding: 0 1rem; color: #1a1a1a; line-height: 1.4; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem;
     border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border-bottom: 1px solid #e3e3e3; padding: .25rem .6rem; text-align: left;
         vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: #555; } .chart { max-width: 100%; height: auto; display: block;
         margin: .5rem 0 1rem; }
ul.examples { margin: 0; padding-left: 1.1rem; }
figure { margin: 1rem 0; } figcaption { font-size: .85rem; color: #555; }
"""


def percent(value: float | None) -> str:
    """Return a share as a whole percentage, or an en dash when it cannot be told."""
    return "–" if value is None else f"{value:.0%}"


def number(value: float | None, digits: int = 2) -> str:
    """Return a number with some digits, or an en dash for None."""
    return "–" if value is None else f"{value:.{digits}f}"


def period(report: Report) -> str:
    """Return the report's period in words: its first and last day (UTC)."""
    since = (iso_time(report.since) or "the first search")[:10]
    last = None if report.until is None else report.until - 1  # until itself is not in it
    return f"{since} to {(iso_time(last) or 'now')[:10]}"


def _stats_rows(rows: Sequence[SearchStats]) -> list[list[str]]:
    """Return table cells of search measures."""
    return [[s.key, str(s.searches), str(s.clients), percent(s.click_through_rate),
             str(s.no_click), percent(s.no_click_rate), number(s.average_click_position, 1),
             str(s.low_confidence), percent(s.low_confidence_rate)] for s in rows]


STATS_HEAD = ["", "searches", "clients", "click-through", "no click", "no-click rate",
              "avg click position", "low confidence", "low-confidence rate"]
OUTCOME_HEAD = ["channel", "sessions", "self-service", "ended helpful", "hand-off rate",
                "callback rate"]
GAP_HEAD = ["#", "clients", "searches", "examples", "channels", "closest article"]


def _outcome_rows(rows: Sequence[ChannelOutcome]) -> list[list[str]]:
    """Return table cells of how sessions ended."""
    return [[o.channel, str(o.sessions), percent(o.self_service_rate),
             percent(o.ended_helpful_rate), percent(o.handoff_rate), percent(o.callback_rate)]
            for o in rows]


def _closest(gap: GapGroup) -> str:
    """Return the closest article of a gap in words."""
    if gap.closest is None:
        return "–"
    return f"{gap.closest.article_id} (p {gap.closest.mean_probability:.2f})"


def _mix(pairs: Sequence[tuple[str, int]]) -> str:
    """Return counted values as 'faq 3, bot 1'."""
    return ", ".join(f"{name} {count}" for name, count in pairs)


def sections(report: Report) -> list[tuple[str, list[str], list[list[str]], str]]:
    """Return the report's tables: (title, header, rows, note), in reading order."""
    out = report.outcomes
    return [
        ("Searches per channel", STATS_HEAD, _stats_rows((report.total, *report.channels)),
         f"low confidence: best probability below {report.gap_below:g}; the bot reports "
         "no clicks"),
        ("Searches per language", STATS_HEAD, _stats_rows(report.languages), ""),
        ("Self-service and hand-offs", OUTCOME_HEAD, _outcome_rows(out),
         f"callback requests in the period: {report.callbacks}, "
         f"{report.unmatched_callbacks} not traced to a FAQ visit"),
        ("Bot hand-off reasons", ["reason", "hand-offs", "share"],
         [[r.code, str(r.count), percent(r.share)] for r in report.handoff_reasons], ""),
        ("Top queries", ["query", "searches", "clients", "click-through", "mean best p"],
         [[q.query, str(q.searches), str(q.clients), percent(q.click_through_rate),
           number(q.mean_best_probability)] for q in report.top_queries], ""),
        ("Content gaps", GAP_HEAD,
         [[str(g.number), str(g.clients), str(g.searches), " | ".join(g.examples),
           _mix(g.channels), _closest(g)] for g in report.gaps],
         "kbsearch gaps draft NUMBER, with the same --since and --until, writes an article "
         "skeleton for a group"),
        ("Helpful rate per article", ["article", "title", "helpful", "not helpful", "rate"],
         [[a.article_id, a.title, str(a.helpful), str(a.not_helpful), percent(a.helpful_rate)]
          for a in report.articles], "helpful or resolved against not helpful or escalated"),
        ("Stale articles", ["article", "title", "review by", "days overdue"],
         [[s.article_id, s.title, s.review_by or "none set",
           "–" if s.days_overdue is None else str(s.days_overdue)] for s in report.stale], ""),
        ("Calibration in use", ["band", "first results", "mean p", "helpful or resolved",
                                "observed"],
         [[f"{b.low:.1f}–{b.high:.1f}", str(b.results), number(b.mean_probability),
           str(b.marked), percent(b.observed_rate)] for b in report.calibration],
         "a floor: most people never vote, so observed rates sit below the probability"),
    ]


def render_text(report: Report, rows: int = TEXT_ROWS) -> str:
    """Return the report as plain text for a terminal (long tables cut to ``rows`` rows)."""
    lines = [f"kbsearch report, {period(report)} (UTC), made {iso_time(report.generated_at)}"]
    for title, head, body, note in sections(report):
        lines += ["", title]
        if not body:
            lines.append("  (none)")
            continue
        shown = body[:rows]
        cells = [head, *shown]
        widths = [min(max(len(row[i]) for row in cells), 60) for i in range(len(head))]
        for row in cells:
            lines.append("  " + "  ".join(
                (cell if len(cell) <= 60 else cell[:59] + "…").ljust(w) for cell, w in
                zip(row, widths, strict=True)).rstrip())
        if len(body) > rows:
            lines.append(f"  … {len(body) - rows} more (--format json or html for all)")
        if note:
            lines.append(f"  ({note})")
    return "\n".join(lines) + "\n"


CHART_TITLES = {
    "searches_per_day": "Searches per day (UTC) and channel",
    "click_through": "Click-through and no-click rate per channel",
    "self_service": "Self-service against hand-off or callback, per channel",
    "calibration": "Calibration in use: mean predicted probability against the share "
                   "marked helpful or resolved, per band",
    "gaps": f"Content gaps by distinct clients (top {TEXT_ROWS})",
}
CHART_AFTER = {"Searches per channel": ("searches_per_day", "click_through"),
               "Self-service and hand-offs": ("self_service",),
               "Content gaps": ("gaps",), "Calibration in use": ("calibration",)}


def report_charts(report: Report) -> dict[str, str]:
    """Return the report's charts as inline SVG strings, by name."""
    days = sorted({d.day for d in report.days})
    channels = [s.key for s in report.channels]  # in the report's order, each with searches
    counts = {(d.day, d.channel): d.searches for d in report.days}
    clickable = [s for s in report.channels if s.click_through_rate is not None]
    sessions = [o for o in report.outcomes if o.sessions]
    with_results = [b for b in report.calibration if b.results]
    return {
        "searches_per_day": charts.stacked_columns(
            CHART_TITLES["searches_per_day"], days,
            [(c, [counts.get((day, c), 0) for day in days]) for c in channels]),
        "click_through": charts.share_bars(
            CHART_TITLES["click_through"],
            [(s.key, [s.clicked, s.no_click]) for s in clickable], ["clicked", "no click"]),
        "self_service": charts.share_bars(
            CHART_TITLES["self_service"],
            [(o.channel, [o.self_service, o.sessions - o.self_service]) for o in sessions],
            ["self-service", "hand-off or callback"]),
        "calibration": charts.reliability(
            CHART_TITLES["calibration"],
            [(b.mean_probability or 0.0, b.observed_rate or 0.0, b.results)
             for b in with_results]),
        "gaps": charts.horizontal_bars(
            CHART_TITLES["gaps"],
            [(f"#{g.number} {g.examples[0] if g.examples else ''}", g.clients)
             for g in report.gaps[:TEXT_ROWS]]),
    }


def _numeric(cell: str) -> bool:
    """Whether a table cell holds a number, a percentage or the en dash of "none"."""
    return NUMERIC.fullmatch(cell) is not None


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return an HTML table; columns after the first that hold only numbers align right."""
    numeric = [i > 0 and all(_numeric(row[i]) for row in rows) for i in range(len(head))]

    def cls(i: int) -> str:
        """Return the class attribute of column i's cells."""
        return ' class="n"' if numeric[i] else ""

    head_html = "".join(f"<th{cls(i)} scope=\"col\">{escape(h)}</th>"
                        for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{escape(c)}</td>" for i, c in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head_html}</tr></thead><tbody>{body}</tbody></table>"


def _gaps_html(gaps: Sequence[GapGroup]) -> str:
    """Return the content gaps as a table with their example queries as lists."""
    rows = []
    for g in gaps:
        examples = "".join(f"<li>{escape(e)}</li>" for e in g.examples)
        rows.append(
            f'<tr><td class="n">{g.number}</td><td class="n">{g.clients}</td>'
            f'<td class="n">{g.searches}</td><td><ul class="examples">{examples}</ul></td>'
            f"<td>{escape(_mix(g.channels))}</td><td>{escape(_mix(g.languages))}</td>"
            f"<td>{escape(_closest(g))}</td></tr>")
    head = "".join(f"<th scope=\"col\">{h}</th>" for h in (
        "#", "clients", "searches", "examples", "channels", "languages", "closest article"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html_body(report: Report) -> str:
    """Return the report's headings, tables and charts as HTML, without the page around them."""
    drawn = report_charts(report)
    parts = [f"<h1>kbsearch report</h1><p class=\"muted\">{escape(period(report))} (UTC), "
             f"made {escape(iso_time(report.generated_at) or '')}</p>"]
    for title, head, rows, note in sections(report):
        parts.append(f"<section><h2>{escape(title)}</h2>")
        parts.extend(f"<figure>{drawn[name]}<figcaption>{escape(CHART_TITLES[name])}"
                     "</figcaption></figure>" for name in CHART_AFTER.get(title, ()))
        if title == "Content gaps" and rows:
            parts.append(_gaps_html(report.gaps))
        elif rows:
            parts.append(_table(head, rows))
        else:
            parts.append('<p class="muted">none</p>')
        if note:
            parts.append(f'<p class="muted">{escape(note)}</p>')
        parts.append("</section>")
    return "".join(parts)


def render_html(report: Report) -> str:
    """Return the report as one self-contained HTML page: inline CSS and SVG, no script."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>kbsearch report {escape(period(report))}</title>"
            f"<style>{STYLE}</style></head><body><main>{render_html_body(report)}</main>"
            "</body></html>\n")
