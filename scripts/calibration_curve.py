#!/usr/bin/env python
"""How many judged queries a knowledge base needs for calibrated probabilities.

Usage: scripts/calibration_curve.py [SET ...] [--sizes 10,20,30,50] [--draws 20]
       [--seed 0] [--json]

A SET is a BEIR folder (default: every set in ../shared/eval) or ``sample``, the bundled
knowledge base with its judged queries (articles/judgments.tsv). Each set is indexed into a
throwaway folder with the configured model, and every judged query's candidates are
retrieved once. Then, for each size n and each of ``--draws`` seeded random draws, the
hybrid calibration is fitted on n judged queries (as ``kbsearch index`` fits it on a
knowledge base's judgments.tsv) and the expected calibration error of the top 10 results
is measured on the other queries of the set. Prints, per set, the ECE of the shipped
calibration on all queries and the mean (and spread) of the ECE on the rest after n
judged queries; ``--json`` prints ``{set: {"queries": q, "shipped": f, "sizes": {n:
{"mean": f, "min": f, "max": f, "draws": d}}}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kbsearch.config import load_settings
from kbsearch.content.articles import load_articles
from kbsearch.index.builds import build_from_articles
from kbsearch.learning.evaluation import (
    JudgedQueries,
    collect_candidates,
    index_dataset,
    load_dataset,
    load_judgments,
)
from kbsearch.learning.fitting import JudgedQuery, fit_calibration, judged_query
from kbsearch.learning.metrics import expected_calibration_error
from kbsearch.ranking.scoring import Calibration, ModeModel, calibrate, scores
from kbsearch.ranking.versions import default_ranker
from kbsearch.service import SearchService, default_embedder

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"
TOP = 10


def ece(queries: Sequence[JudgedQuery], model: ModeModel, calibration: Calibration) -> float:
    """Return the ECE of each query's top results under a calibration."""
    probabilities: list[float] = []
    outcomes: list[bool] = []
    for query in queries:
        s = scores(query.matrix, model.weights)
        p = calibrate(s, query.matrix, calibration)
        best = np.argsort(-s, kind="stable")[:TOP]
        probabilities += [float(v) for v in p[best]]
        outcomes += [bool(query.relevant[i] > 0) for i in best]
    return expected_calibration_error(probabilities, outcomes)


def judged_rows(name: str, tmp: Path) -> list[JudgedQuery]:
    """Index a set into ``tmp`` and return its judged queries' candidates as rows."""
    # the shipped weights and a throwaway feedback store: nothing of data/ takes part
    settings = load_settings().replace(weights_dir=tmp / "weights",
                                       feedback_db=tmp / "feedback.sqlite3")
    embedder = default_embedder(settings)
    index = tmp / "index"
    if name == "sample":
        build_from_articles(list(load_articles(settings.articles).articles), index, embedder,
                            chunk_tokens=settings.chunk_tokens,
                            exact_limit=settings.exact_limit)
        service = SearchService(settings.replace(index=index), embedder=embedder)
        known = [a.id for a in service.index().articles]
        judged = JudgedQueries(service, load_judgments(settings.judgments, known))
        return [q for q in judged.queries(service.ranker()) if len(q.relevant)]
    dataset = load_dataset(Path(name))
    index_dataset(dataset, index, embedder, settings)
    service = SearchService(settings.replace(index=index), embedder=embedder)
    return [judged_query(j.candidates, j.relevant) for j in collect_candidates(service, dataset)]


def curve(rows: Sequence[JudgedQuery], model: ModeModel, sizes: Sequence[int], draws: int,
          seed: int) -> dict[str, object]:
    """Return the shipped calibration's ECE and the ECE on the rest after n judged queries."""
    result: dict[str, object] = {"queries": len(rows),
                                 "shipped": round(ece(rows, model, model.calibration), 4),
                                 "sizes": {}}
    rng = np.random.default_rng(seed)
    for n in sizes:
        if n >= len(rows) - 5:
            continue
        values: list[float] = []
        while len(values) < draws:
            chosen = set(rng.choice(len(rows), size=n, replace=False).tolist())
            train = [r for i, r in enumerate(rows) if i in chosen]
            if {float(v) > 0 for q in train for v in q.relevant} != {True, False}:
                continue  # a calibration needs solved and unsolved results
            rest = [r for i, r in enumerate(rows) if i not in chosen]
            values.append(ece(rest, model, fit_calibration(train, model.weights)))
        result["sizes"][str(n)] = {  # type: ignore[index]
            "mean": round(float(np.mean(values)), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "draws": draws}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Measure each set and print a table or JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*")
    parser.add_argument("--sizes", default="10,20,30,50")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sets = args.sets or ["sample", *sorted(str(p) for p in EVAL.iterdir() if p.is_dir())]
    sizes = [int(n) for n in args.sizes.split(",")]
    model = default_ranker().model.for_mode("hybrid")  # the shipped weights and calibration
    results = {}
    for name in sets:
        with tempfile.TemporaryDirectory(prefix="kbsearch-calibration-") as tmp:
            rows = judged_rows(name, Path(tmp))
        results[Path(name).name] = curve(rows, model, sizes, args.draws, args.seed)
        print(f"{Path(name).name}: {json.dumps(results[Path(name).name])}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("| set | queries | shipped calibration | " + " | ".join(
        f"{n} judged: mean (min–max)" for n in sizes) + " |")
    print("| --- | ---: | ---: |" + " ---: |" * len(sizes))
    for name, figures in results.items():
        cells = []
        for n in sizes:
            got = figures["sizes"].get(str(n))  # type: ignore[attr-defined]
            cells.append("-" if got is None else
                         f"{got['mean']:.3f} ({got['min']:.3f}–{got['max']:.3f})")
        print(f"| {name} | {figures['queries']} | {figures['shipped']:.3f} | "
              + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
