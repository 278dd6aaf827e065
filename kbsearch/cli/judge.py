"""kbsearch judge: say from the keyboard which articles solve a query; saved as judgments.

The judged queries (``judgments.tsv``) calibrate the probabilities at every ``kbsearch
index`` and guard every trained ranking version; this command makes them quickly: each
query is shown with its top candidates, and the numbers typed are appended to the file at
once, so stopping midway loses nothing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from kbsearch.cli.base import _settings, friendly_errors, main
from kbsearch.config import Settings

PROMPT = "solves it (numbers like 1 3; Enter: none; s: skip; q: quit)"


@main.command()
@click.option("--from", "from_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Judge these queries, one a line ('#' starts a comment).")
@click.option("--gaps", "from_gaps", is_flag=True,
              help="Judge the content gaps' most common queries.")
@click.option("-k", "k", type=click.IntRange(1, 20), default=5, show_default=True,
              help="Candidates shown per query.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="At most this many queries.")
@click.option("--judgments", "judgments_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="File to add to (default: the knowledge base's "
                                 "judgments.tsv, KBSEARCH_JUDGMENTS).")
@friendly_errors
def judge(from_file: Path | None, from_gaps: bool, k: int, limit: int,
          judgments_path: Path | None) -> None:
    """Show queries with their top articles and record which solve them (judgments.tsv).

    The queries come from --from FILE, from the content gaps (--gaps), or by default from
    the search log, most frequent first; queries already judged are left out. Type the
    numbers of the articles that solve the query and Enter; each verdict is appended to
    the judgments file at once. Internal articles are shown too (the judge is an editor).
    """
    from kbsearch.content.visibility import Caller
    from kbsearch.learning.calibration import judgments_file
    from kbsearch.learning.evaluation import load_judgments
    from kbsearch.learning.gaps import normal_text
    from kbsearch.service import SearchService

    if from_file is not None and from_gaps:
        raise click.UsageError("choose one source: --from FILE or --gaps")
    settings = _settings()
    path = judgments_path or judgments_file(settings)
    judged = {normal_text(j.query) for j in load_judgments(path)} if path.exists() else set()
    queries = [q for q in _queries(settings, from_file, from_gaps) if normal_text(q) not in judged]
    if not queries:
        click.echo("nothing to judge: every query is judged already, or there are none")
        return
    service = SearchService(settings)
    recorded = 0
    for number, query in enumerate(queries[:limit], start=1):
        response = service.search(query, k=k, log=False, caller=Caller(role="editor"))
        click.echo(f"\n[{number}/{min(limit, len(queries))}] {query}")
        ids = [r.article.id for r in response.results]
        for position, result in enumerate(response.results, start=1):
            click.echo(f"  {position}  {result.hit.probability:4.0%}  {result.article.title}"
                       f"  ({result.article.id})")
        answer = _ask(len(ids))
        if answer == "q":
            break
        if isinstance(answer, str):  # "s": skip
            continue
        if not answer:
            click.echo("  none of them: left for the content gaps, not recorded")
            continue
        _append(path, query, [ids[i - 1] for i in answer])
        recorded += 1
    click.echo(f"\nrecorded {recorded} judged quer{'y' if recorded == 1 else 'ies'} in {path}"
               + ("; 'kbsearch index' calibrates on them" if recorded else ""))


def _queries(settings: Settings, from_file: Path | None, from_gaps: bool) -> list[str]:
    """Return the queries to judge from the chosen source, most important first."""
    if from_file is not None:
        try:
            lines = from_file.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"cannot read {from_file}: {exc}",
                                     param_hint="--from") from None
        return [" ".join(q.split()) for q in lines if q.strip() and not q.lstrip().startswith("#")]
    if from_gaps:
        from kbsearch.cli.analytics import _articles, _gaps

        return [gap.examples[0] for gap in _gaps(settings, None, None, _articles(settings))
                if gap.examples]
    from kbsearch.learning.gaps import normal_text
    from kbsearch.stores.feedback_sqlite import SQLiteFeedbackStore

    store = SQLiteFeedbackStore(settings.feedback_db)
    try:
        typed = Counter(" ".join(s.query.split()) for s in store.searches() if not s.synthetic)
    finally:
        store.close()
    by_key: dict[str, Counter[str]] = {}
    for query, count in typed.items():
        by_key.setdefault(normal_text(query), Counter())[query] += count
    ranked = sorted(by_key.values(), key=lambda c: (-sum(c.values()), c.most_common(1)[0][0]))
    return [spellings.most_common(1)[0][0] for spellings in ranked]


def _ask(candidates: int) -> list[int] | str:
    """Ask which candidates solve the query until the answer is valid: their numbers,
    [] for none, 's' or 'q'."""
    while True:
        answer = click.prompt(PROMPT, default="", show_default=False).strip().lower()
        if answer in ("s", "q"):
            return answer
        parts = answer.replace(",", " ").split()
        if all(p.isdigit() and 1 <= int(p) <= candidates for p in parts):
            return sorted({int(p) for p in parts})
        click.echo(f"  type numbers from 1 to {candidates}, Enter, s or q")


def _append(path: Path, query: str, ids: list[str]) -> None:
    """Append one judged query to the judgments file, on a line of its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    starts_fresh = not path.exists() or path.stat().st_size == 0
    ends_open = not starts_fresh and not path.read_bytes().endswith(b"\n")
    with path.open("a", encoding="utf-8") as handle:
        handle.write(("\n" if ends_open else "") + f"{query}\t{','.join(ids)}\n")
