"""Commands for team leads and editors: the analytics report and the content gaps."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kbsearch.cli.base import _settings, friendly_errors, main

if TYPE_CHECKING:
    from kbsearch.config import Settings
    from kbsearch.content.articles import Article
    from kbsearch.learning.gaps import GapGroup

DATE = click.DateTime(formats=["%Y-%m-%d"])


def period_options(command: Any) -> Any:
    """Add --since and --until (UTC days, both included)."""
    command = click.option("--until", type=DATE, default=None,
                           help="Last day (UTC, YYYY-MM-DD) of the period, included.")(command)
    return click.option("--since", type=DATE, default=None,
                        help="First day (UTC, YYYY-MM-DD) of the period; default: all "
                        "that is kept.")(command)


def _period(since: dt.datetime | None, until: dt.datetime | None
            ) -> tuple[float | None, float | None]:
    """Return the period of two UTC days as unix seconds: since's midnight to until's end."""
    start = since.replace(tzinfo=dt.UTC).timestamp() if since else None
    end = (until.replace(tzinfo=dt.UTC) + dt.timedelta(days=1)).timestamp() if until else None
    if start is not None and end is not None and end <= start:
        raise click.BadParameter("must not be before --since", param_hint="--until")
    return start, end


def _articles(settings: Settings) -> tuple[Article, ...]:
    """Return the knowledge base's valid articles (none, with a warning, if it cannot be read)."""
    from kbsearch.content.articles import load_articles
    from kbsearch.errors import ArticlesNotFoundError

    try:
        return load_articles(settings.articles, settings.languages).articles
    except ArticlesNotFoundError as exc:
        click.echo(f"warning: {exc}; articles are shown by id only", err=True)
        return ()


def _stores(settings: Settings) -> tuple[Any, Any, Any]:
    """Open the feedback store, the bot's hand-off log and the callback store."""
    from kbsearch.stores.callbacks import SQLiteCallbackStore
    from kbsearch.stores.feedback_sqlite import SQLiteFeedbackStore
    from kbsearch.stores.handoffs import SQLiteHandoffStore

    return (SQLiteFeedbackStore(settings.feedback_db), SQLiteHandoffStore(settings.channels_db),
            SQLiteCallbackStore(settings.channels_db))


def _gaps(settings: Settings, since: float | None, until: float | None,
          articles: Sequence[Article]) -> list[GapGroup]:
    """Return the content gaps of a period."""
    from kbsearch.learning.gaps import gaps_in

    feedback, handoffs, _ = _stores(settings)
    return gaps_in(feedback, handoffs, below=settings.gap_below,
                   min_searches=settings.gap_min_searches, since=since, until=until,
                   titles={a.id: a.title for a in articles})


def _echo_gap(gap: GapGroup) -> None:
    """Print one gap group for a terminal."""
    mix = ", ".join(f"{name} {n}" for name, n in gap.channels + gap.languages)
    click.echo(f"#{gap.number}  {gap.clients} clients, {gap.searches} searches  ({mix})")
    if gap.closest is not None:
        title = f" “{gap.closest.title}”" if gap.closest.title else ""
        click.echo(f"    closest: {gap.closest.article_id}{title} (first in "
                   f"{gap.closest.top_searches}, mean probability "
                   f"{gap.closest.mean_probability:.2f})")
    for example in gap.examples:
        click.echo(f"    - {example}")


@main.group(invoke_without_command=True)
@period_options
@click.option("--json", "as_json", is_flag=True, help="Print the groups as JSON.")
@click.pass_context
@friendly_errors
def gaps(ctx: click.Context, since: dt.datetime | None, until: dt.datetime | None,
         as_json: bool) -> None:
    """List the content gaps: unanswered searches grouped by meaning, top group first.

    A search is unanswered when its best probability stayed below KBSEARCH_GAP_BELOW, a
    result was marked not helpful or escalated, or the chatbot handed off after it.
    Groups of at least KBSEARCH_GAP_MIN_SEARCHES searches are ranked by distinct clients;
    'kbsearch gaps draft NUMBER' turns one into an article skeleton.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings()
    start, end = _period(since, until)
    found = _gaps(settings, start, end, _articles(settings))
    if as_json:
        from kbsearch.learning.gaps import iso_time

        click.echo(json.dumps({
            "since": iso_time(start), "until": iso_time(end), "gap_below": settings.gap_below,
            "min_searches": settings.gap_min_searches,
            "groups": [g.to_json() for g in found]}, indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo(f"no content gaps: no {settings.gap_min_searches} unanswered searches "
                   "share a meaning")
        return
    for gap in found:
        _echo_gap(gap)


@gaps.command(name="draft")
@click.argument("group", type=click.IntRange(min=1))
@period_options
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for the draft (default: next to the closest article in "
              "KBSEARCH_ARTICLES).")
@friendly_errors
def gaps_draft(group: int, since: dt.datetime | None, until: dt.datetime | None,
               out: Path | None) -> None:
    """Write an article skeleton (status: draft) for gap GROUP; never overwrites a file.

    GROUP is the number 'kbsearch gaps' shows for the same --since and --until.
    """
    from kbsearch.errors import ReportError
    from kbsearch.learning.gap_drafts import make_draft, write_draft

    settings = _settings()
    start, end = _period(since, until)
    articles = _articles(settings)
    found = _gaps(settings, start, end, articles)
    chosen = next((g for g in found if g.number == group), None)
    if chosen is None:
        raise ReportError(f"GROUP: there is no gap {group}; 'kbsearch gaps' with the same "
                          f"--since and --until lists {len(found)}")
    draft = make_draft(chosen, articles, settings.articles, out,
                       dt.datetime.now(dt.UTC).date())
    click.echo(f"wrote {write_draft(draft)} (id {draft.article_id}, status: draft)")


@main.command()
@period_options
@click.option("--format", "form", type=click.Choice(("text", "json", "html")), default="text",
              show_default=True, help="text for a terminal, json for programs, html: one "
              "self-contained page with charts.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the report to this file instead of printing it.")
@friendly_errors
def report(since: dt.datetime | None, until: dt.datetime | None, form: str,
           out: Path | None) -> None:
    """Report searches, clicks, self-service, hand-offs, top queries, gaps and calibration.

    Per channel and language: searches, distinct clients, click-through and no-click rate,
    average click position, low-confidence searches; per article the helpful rate; how FAQ
    visits and bot conversations ended; bot hand-off reasons; stale articles; and how often
    first results of each probability band were later marked helpful. The README defines
    each measure.
    """
    from kbsearch.errors import ReportError
    from kbsearch.learning.checks import stale_articles
    from kbsearch.learning.report import build_report
    from kbsearch.learning.report_render import render_html, render_text

    settings = _settings()
    start, end = _period(since, until)
    articles = _articles(settings)
    feedback, handoffs, callbacks = _stores(settings)
    built = build_report(
        feedback, handoffs, callbacks, gap_below=settings.gap_below,
        gap_min_searches=settings.gap_min_searches, since=start, until=end,
        titles={a.id: a.title for a in articles},
        stale=stale_articles(articles, dt.datetime.now(dt.UTC).date()))
    if form == "json":
        text = json.dumps(built.to_json(), indent=2, ensure_ascii=False) + "\n"
    else:
        text = render_html(built) if form == "html" else render_text(built)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"--out: cannot write {out}: {exc}") from None
    click.echo(f"wrote {out}", err=True)
