"""Commands that learn: train, calibrate, and the weights versions."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    pass

from kbsearch.cli.base import _settings, friendly_errors, main


def _outcome_json(outcome: Any) -> str:
    """Return a training or calibration outcome as indented JSON."""
    return json.dumps({"version": outcome.version, "parent": outcome.parent,
                       "promoted": outcome.promoted, "reason": outcome.reason,
                       "report": outcome.report}, indent=2)


@main.command()
@click.option("--judgments/--no-judgments", default=True, show_default=True,
              help="Also check the new version on the judged queries (KBSEARCH_JUDGMENTS).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@friendly_errors
def train(judgments: bool, as_json: bool) -> None:
    """Train new ranking weights from the logged feedback and promote them if not worse.

    Clicks are corrected for position bias, explicit feedback counts more, the current
    weights act as a prior, and learned questions and helpfulness are rebuilt. The new
    version is compared with the current one on held-out feedback (and the judged queries);
    it becomes current only if it is not worse, otherwise it is kept with the reason.
    """
    from kbsearch.learning.evaluation import JudgedQueries, load_judgments
    from kbsearch.learning.train import TrainOptions
    from kbsearch.learning.train import train as run_training
    from kbsearch.service import SearchService

    settings = _settings()
    service = SearchService(settings)
    judged = None
    if judgments and settings.judgments.exists():
        known = [a.id for a in service.index().articles]
        judged = JudgedQueries(service, load_judgments(settings.judgments, known))
    elif judgments:
        click.echo(f"no judged queries at {settings.judgments}; checking on held-out "
                   "feedback only", err=True)
    outcome = run_training(
        service.feedback, service.weights, TrainOptions.from_settings(settings), judged
    )
    if as_json:
        click.echo(_outcome_json(outcome))
        return
    click.echo(f"trained {outcome.version} from {outcome.report['train_searches']} searches "
               f"with feedback ({outcome.report['held_out_searches']} held out)")
    dcg = outcome.report["held_out_dcg"]
    if dcg["current"] is not None:
        click.echo(f"held-out feedback DCG: current {dcg['current']:.4f}, "
                   f"new {dcg['new']:.4f}")
    if "judged_ndcg@10" in outcome.report:
        figures = outcome.report["judged_ndcg@10"]
        click.echo(f"judged nDCG@10: current {figures['current']:.4f}, "
                   f"new {figures['new']:.4f}")
    click.echo(outcome.reason)


@main.command()
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Folds of the cross-fitted ECE that compares old and new calibration.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@friendly_errors
def calibrate(folds: int, as_json: bool) -> None:
    """Calibrate the probabilities on the knowledge base's judged queries (KBSEARCH_JUDGMENTS)
    and the agents' verdicts (results an agent key marked resolved).

    Useful before any feedback exists: the shipped calibration is a compromise over other
    data sets. The refitted calibration becomes current only if its cross-fitted expected
    calibration error on the judged queries is not worse; weights stay as they are.
    """
    from kbsearch.learning.calibration import (
        calibrate_on_judgments,
        judgments_file,
        knowledge_base_judgments,
        merge_judgments,
    )
    from kbsearch.learning.evaluation import JudgedQueries
    from kbsearch.service import SearchService

    settings = _settings()
    path = judgments_file(settings)
    service = SearchService(settings)
    from_file, verdicts = knowledge_base_judgments(
        path, service.feedback if settings.feedback_db.is_file() else None,
        [a.id for a in service.index().articles])
    if not from_file and not verdicts:
        raise click.ClickException(
            f"no judged queries at {path} (set KBSEARCH_JUDGMENTS; lines of "
            "'query<TAB>article-id[,id...]') and no agents' verdicts in the search log"
        )
    judged = JudgedQueries(service, merge_judgments(from_file, verdicts))
    outcome = calibrate_on_judgments(service.weights, judged, folds)
    if as_json:
        click.echo(_outcome_json(outcome))
        return
    click.echo(f"calibrated {outcome.version} on {outcome.report['judged_queries']} "
               f"judged queries")
    click.echo(outcome.reason)


@main.group()
def weights() -> None:
    """List, inspect, promote and roll back trained ranking-weights versions."""


@weights.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@friendly_errors
def weights_list(as_json: bool) -> None:
    """List the weights versions; the current one is marked."""
    from kbsearch.ranking.versions import WeightsStore

    infos = WeightsStore(_settings().weights_dir).list()
    if as_json:
        click.echo(json.dumps([info.__dict__ for info in infos], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ranking weights")
    for column in ("", "version", "created", "status", "parent", "reason"):
        table.add_column(column)
    for info in infos:
        table.add_row("*" if info.current else "", info.version, info.created, info.status,
                      info.parent, info.reason)
    Console().print(table)


@weights.command(name="show")
@click.argument("version", default="current")
@friendly_errors
def weights_show(version: str) -> None:
    """Print a version's weights, calibration and evaluation report as JSON."""
    from kbsearch.ranking.versions import WeightsStore

    store = WeightsStore(_settings().weights_dir)
    name = store.current_version() if version == "current" else version
    click.echo(json.dumps(store.document(name), indent=2, ensure_ascii=False))


@weights.command(name="promote")
@click.argument("version")
@friendly_errors
def weights_promote(version: str) -> None:
    """Make VERSION current (also one that training did not promote); a running service
    switches to it within a second."""
    from kbsearch.ranking.versions import WeightsStore

    store = WeightsStore(_settings().weights_dir)
    store.document(version)  # raises if unknown
    store.promote(version, "promoted by hand")
    click.echo(f"{version} is now current")


@weights.command(name="rollback")
@friendly_errors
def weights_rollback() -> None:
    """Make the previously promoted version current again."""
    from kbsearch.ranking.versions import WeightsStore

    previous = WeightsStore(_settings().weights_dir).rollback()
    click.echo(f"rolled back; {previous} is now current")
