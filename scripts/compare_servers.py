#!/usr/bin/env python
"""Two kbsearch checkouts served side by side on one bench base, searched interleaved.

Usage: scripts/compare_servers.py BASE CHECKOUT_A CHECKOUT_B [--queries 300] [--seed 1]
       [--eval-dir DIR] [--models MODEL_A MODEL_B] [--search-log FILE] [--json]

BASE is a size folder of ``scripts/bench.py --workdir DIR`` (``DIR/10000``). Each checkout
(a folder holding the ``kbsearch`` package, e.g. a ``git worktree`` of an older commit)
serves the base's current build with ``kbsearch serve``'s defaults, as the benchmark's
server does, each with stores of its own in a temporary folder. One client sends the same
mixed German and English queries to both over kept-alive connections, alternating which
goes first, so that whatever else the machine does falls on both alike: on a machine
whose speed drifts from one run to the next, only such a comparison can tell a change of
a few milliseconds. Prints p50 / p95 / p99 per checkout. ``--models`` gives each server a
model folder of its own (``KBSEARCH_MODEL``; e.g. two exports of one model, one checkout
named twice); by default both serve the configured model. ``--search-log`` starts each
server's feedback store from a copy of FILE (e.g. the base's ``data/feedback.sqlite3``
after some bench runs), as a service that has logged searches for a while writes into a
large file, not an empty one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench  # noqa: E402
from bench_kb import load_sources, mixed_queries  # noqa: E402

from kbsearch.backup import copy_database  # noqa: E402
from kbsearch.config import load_settings  # noqa: E402

WARM_UP = 5  # queries sent to both before the timed ones


def figures(times_ms: Sequence[float]) -> dict[str, float]:
    """Return p50, p95 and p99 of some times (ms), as the benchmark computes them."""
    return {f"p{p}": round(bench.percentile(times_ms, p / 100), 1) for p in (50, 95, 99)}


def compare(base: Path, checkouts: Sequence[Path], queries: Sequence[str],
            models: Sequence[str] | None = None, search_log: Path | None = None,
            ) -> dict[str, dict[str, float]]:
    """Serve the base from each checkout (with its model, where ``models`` names them; its
    feedback store a copy of ``search_log`` where given) and time every query on each,
    interleaved."""
    names = [str(c) for c in checkouts] if models is None else [
        f"{c} ({m})" for c, m in zip(checkouts, models, strict=True)]
    times: dict[str, list[float]] = {name: [] for name in names}
    servers: dict[str, tuple[object, int]] = {}
    connections: dict[str, http.client.HTTPConnection] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for number, checkout in enumerate(checkouts):
                data = Path(tmp) / str(number)
                data.mkdir()
                if search_log is not None:
                    copy_database(search_log, data / "feedback.sqlite3")
                settings = bench.size_settings(load_settings(), base).replace(
                    feedback_db=data / "feedback.sqlite3", channels_db=data / "ch.sqlite3",
                    weights_dir=data / "w", keys_file=data / "keys.json")
                if models is not None:
                    settings = settings.replace(model=models[number])
                servers[names[number]] = bench.start_server(settings, data, None,
                                                            root=checkout)
            connections.update({name: http.client.HTTPConnection("127.0.0.1", port,
                                                                  timeout=60)
                                for name, (_, port) in servers.items()})
            for position, query in enumerate([*queries[:WARM_UP], *queries]):
                for name in names if position % 2 == 0 else reversed(names):
                    started = time.perf_counter()
                    status, body = bench.get(0, bench.search_path(query), connections[name])
                    if status != 200:
                        raise bench.BenchError(f"{name}: {query!r} answered {status}: "
                                               f"{body[:300]!r}")
                    if position >= WARM_UP:
                        times[name].append((time.perf_counter() - started) * 1000)
        finally:
            for connection in connections.values():
                connection.close()
            for process, _ in servers.values():
                bench.stop_server(process)  # type: ignore[arg-type]
    return {name: figures(values) for name, values in times.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Compare two checkouts; print JSON or a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("checkouts", type=Path, nargs=2)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--eval-dir", type=Path,
                        default=Path(__file__).resolve().parent.parent.parent / "shared" / "eval")
    parser.add_argument("--models", nargs=2, metavar=("MODEL_A", "MODEL_B"),
                        help="the model folder each checkout serves with (KBSEARCH_MODEL)")
    parser.add_argument("--search-log", type=Path, metavar="FILE",
                        help="a feedback store each server starts from a copy of")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.search_log is not None and not args.search_log.is_file():
        parser.error(f"--search-log {args.search_log}: no such file")
    for checkout in args.checkouts:
        if not (checkout / "kbsearch" / "__init__.py").is_file():
            parser.error(f"{checkout}: no kbsearch package in it")
    if not (args.base / "index").is_dir():
        parser.error(f"{args.base}: no index folder (a size folder of bench.py --workdir)")
    queries = mixed_queries(load_sources(load_settings().articles, args.eval_dir),
                            args.queries, args.seed)
    models = None if args.models is None else [str(Path(m).resolve()) for m in args.models]
    result = compare(args.base, [c.resolve() for c in args.checkouts], queries, models,
                     args.search_log)
    if args.json:
        print(json.dumps({"base": str(args.base), "queries": len(queries), "servers": result}))
    else:
        print("| checkout | HTTP p50 / p95 / p99 ms |\n| --- | --- |")
        for name, f in result.items():
            print(f"| {name} | {f['p50']} / {f['p95']} / {f['p99']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
