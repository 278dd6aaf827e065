"""Commands for editors: check the articles before they are published."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kbsearch.cli.base import _settings, friendly_errors, index_options, main

if TYPE_CHECKING:
    from kbsearch.index.embedding import Embedder
    from kbsearch.learning.checks import CheckReport

SEVERITY_COLOURS = {"error": "red", "warning": "yellow"}


def print_report(report: CheckReport) -> None:
    """Print the findings like a linter, file by file, then the notes and a summary line."""
    for finding in report.findings:
        severity = click.style(finding.severity, fg=SEVERITY_COLOURS[finding.severity])
        click.echo(f"{finding.location()}: {severity} {finding.code}: {finding.message}")
    for note in report.notes:
        click.echo(f"note: {note}")
    click.echo(f"{report.articles} articles checked: {report.errors} error(s), "
               f"{report.warnings} warning(s)")


@main.command()
@index_options
@click.option("--json", "as_json", is_flag=True,
              help='Print one JSON object: {"articles", "errors", "warnings", "findings", ...}.')
@friendly_errors
def check(articles_dir: Path | None, index_dir: Path | None, as_json: bool) -> None:
    """Check the articles: every validation error, and warnings for editors to act on.

    Warnings: review_by passed or missing, near-duplicate articles (their closest
    sections), links and related ids that lead to no published article, translation_of
    that names no usable original, old drafts, and published articles that no judged query
    lists and no recent search reached (needs the feedback database). Exit status 1 when
    there are errors, 0 with warnings only. Works without an index and without feedback;
    the model is loaded only when some article is not in the current index build.
    """
    from kbsearch.learning.calibration import judgments_file
    from kbsearch.learning.checks import run_checks

    # the judged queries beside the articles checked, unless KBSEARCH_JUDGMENTS moved them
    settings = _settings(articles=articles_dir, index=index_dir)
    settings = settings.replace(judgments=judgments_file(settings))

    def load_embedder() -> Embedder:
        from kbsearch.service import default_embedder

        return default_embedder(settings)

    report = run_checks(settings, load_embedder)
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print_report(report)
    if report.errors:
        sys.exit(1)
