#!/usr/bin/env python
"""Fit the shipped ranking weights on judged BEIR sets and report held-out figures.

Usage: scripts/fit_weights.py [DATASET_DIR ...] [--sample] [--folds 5] [--leave-one-out]
       [--features a,b,...] [--write | --out FILE] [--json]

Each dataset is scored by cross-validation over its queries: a fold is ranked by weights
fitted on the other folds of that dataset plus all other datasets, so no query is scored by
weights that saw it. With --leave-one-out, each dataset is instead ranked by weights and
calibration fitted on the other datasets alone, as a customer's own knowledge base meets
the shipped weights. --sample adds the bundled knowledge base with its judged queries
(articles/judgments.tsv) as one more dataset. With --write, weights fitted on every query of
every dataset (each dataset weighted equally) replace kbsearch/weights/default.json; with
--out FILE they go to FILE instead. Retrieval results are cached under build/fit-cache/
(delete it after changing retrieval or features).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from kbsearch.config import Settings, load_settings
from kbsearch.index.embedding import Embedder
from kbsearch.learning.evaluation import (
    collect_candidates,
    index_dataset,
    load_dataset,
    score_rankings,
)
from kbsearch.learning.fitting import JudgedQuery, fit_mode, judged_query
from kbsearch.ranking.scoring import MODE_FEATURES, MODES, RankingModel, rank_mode
from kbsearch.service import SearchService, default_embedder

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SETS = [p.parent for p in sorted((ROOT.parent / "shared" / "eval").glob("*/qrels.tsv"))]


def collect(folder: Path, settings, embedder) -> dict:
    """Index a dataset into a throwaway index and return each query's candidates."""
    dataset = load_dataset(folder)
    with tempfile.TemporaryDirectory() as tmp:
        index_dataset(dataset, Path(tmp), embedder, settings)
        service = SearchService(settings.replace(index=Path(tmp)), embedder=embedder)
        judged = collect_candidates(service, dataset, progress=True)
    return {"name": dataset.name, "judged": judged}


def collect_sample(settings: Settings, embedder: Embedder) -> dict:
    """Index the bundled knowledge base and return its judged queries' candidates."""
    from kbsearch.content.articles import load_articles
    from kbsearch.index.builds import build_from_articles
    from kbsearch.index.retrieval import SearchRequest
    from kbsearch.learning.evaluation import Judged, load_judgments

    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        build_from_articles(list(load_articles(settings.articles).articles), index, embedder,
                            chunk_tokens=settings.chunk_tokens,
                            exact_limit=settings.exact_limit)
        service = SearchService(settings.replace(
            index=index, weights_dir=Path(tmp) / "w", feedback_db=Path(tmp) / "f.sqlite3"),
            embedder=embedder)
        loaded = service.index()
        judgments = load_judgments(settings.judgments, [a.id for a in loaded.articles])
        vectors = embedder.embed_queries([j.query for j in judgments])
        judged = [Judged(f"j{j.line}", service.candidates(
            loaded, SearchRequest(j.query, k=100, visibility="internal"), vector),
            j.relevant) for j, vector in zip(judgments, vectors, strict=True)]
    return {"name": "sample", "judged": judged}


def held_out_rankings(test, model, mode: str) -> dict[str, list[tuple[str, float]]]:
    """Rank the test queries as the service would in a mode."""
    return {
        j.query_id: [(h.id, h.probability) for h in rank_mode(j.candidates, mode, model, 100)]
        for j in test
    }


def relevant_per_query(judged) -> float:
    """Return the mean number of articles judged to solve a query (1 on an FAQ without
    duplicates; more where several articles answer the same need)."""
    return round(float(np.mean([len(j.relevant) for j in judged])), 2)


def training_set(judged, weight: float) -> list[JudgedQuery]:
    return [judged_query(j.candidates, j.relevant, weight) for j in judged]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", type=Path, default=DEFAULT_SETS)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--l2", type=float, default=1e-3, help="L2 of the linear model")
    parser.add_argument("--kind", choices=("linear", "trees"), default="linear",
                        help="hybrid scorer: listwise linear (shipped) or gradient-boosted "
                             "trees (slow to cross-validate: about 1 min per fit)")
    parser.add_argument("--write", action="store_true", help="replace the shipped weights")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help="write the weights fitted on every query to FILE instead "
                             "(e.g. weights that never saw one set, for scripts/"
                             "simulate_feedback.py --start-weights)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--sample", action="store_true",
                        help="add the bundled knowledge base's judged queries as a dataset")
    parser.add_argument("--leave-one-out", action="store_true",
                        help="rank each dataset with weights fitted on the others only")
    parser.add_argument("--features", default=",".join(MODE_FEATURES["hybrid"]),
                        help="comma-separated features of the hybrid mode (an ablation: "
                             "features left out get no weight)")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "fit-cache")
    args = parser.parse_args()
    hybrid = tuple(f for f in args.features.split(",") if f)
    unknown = sorted(set(hybrid) - set(MODE_FEATURES["hybrid"]))
    if unknown or not hybrid:
        parser.error(f"--features: unknown {unknown}; choose from "
                     + ",".join(MODE_FEATURES["hybrid"]))
    mode_features = {**MODE_FEATURES, "hybrid": hybrid}

    settings = load_settings()
    embedder = None
    data = []
    for folder in [*args.datasets, *([Path("sample")] if args.sample else [])]:
        cache = args.cache / f"{folder.name}.npy"
        if cache.exists():
            data.append(np.load(cache, allow_pickle=True).item())
            continue
        embedder = embedder or default_embedder(settings)
        collected = (collect_sample(settings, embedder) if folder == Path("sample")
                     else collect(folder, settings, embedder))
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, np.array(collected, dtype=object), allow_pickle=True)
        data.append(collected)

    rng = np.random.default_rng(7)
    report: dict[str, dict] = {}
    for d in data if args.leave_one_out else []:
        others = [q for o in data if o is not d
                  for q in training_set(o["judged"], 1 / len(o["judged"]))]
        qrels = {j.query_id: dict.fromkeys(j.relevant, 1) for j in d["judged"]}
        report[d["name"]] = {"queries": len(d["judged"]),
                             "relevant_per_query": relevant_per_query(d["judged"]), "modes": {
            mode: score_rankings(held_out_rankings(
                d["judged"], fit_mode(others, mode_features[mode], args.l2, args.kind), mode),
                qrels) for mode in MODES}}
    for d in [] if args.leave_one_out else data:
        judged = d["judged"]
        folds = rng.permutation(len(judged)) % args.folds
        others = [
            q for o in data if o is not d for q in training_set(o["judged"], 1 / len(o["judged"]))
        ]
        qrels = {j.query_id: dict.fromkeys(j.relevant, 1) for j in judged}
        report[d["name"]] = {"queries": len(judged),
                             "relevant_per_query": relevant_per_query(judged), "modes": {}}
        for mode in MODES:
            held: dict[str, list[tuple[str, float]]] = {}
            for fold in range(args.folds):
                train = [j for j, f in zip(judged, folds, strict=True) if f != fold]
                test = [j for j, f in zip(judged, folds, strict=True) if f == fold]
                model = fit_mode(others + training_set(train, 1 / len(train)),
                                 mode_features[mode], args.l2, args.kind)
                held.update(held_out_rankings(test, model, mode))
            report[d["name"]]["modes"][mode] = score_rankings(held, qrels)

    for name, r in report.items():
        how = ("fitted on the other datasets only" if args.leave_one_out
               else f"{args.folds}-fold cross-validated")
        print(f"\n{name} ({r['queries']} queries, {r['relevant_per_query']} relevant "
              f"articles per query, {how})", file=sys.stderr)
        for mode, m in r["modes"].items():
            print(f"  {mode:8s} " + "  ".join(f"{k} {v:.3f}" for k, v in m.items()),
                  file=sys.stderr)

    if args.write or args.out:
        everything = [q for d in data for q in training_set(d["judged"], 1 / len(d["judged"]))]
        model = RankingModel(
            modes={
                mode: fit_mode(everything, mode_features[mode], args.l2, args.kind)
                for mode in MODES
            },
            description=(
                f"Fitted {dt.date.today().isoformat()} by scripts/fit_weights.py on "
                + ", ".join(f"{d['name']} ({len(d['judged'])} queries)" for d in data)
                + f"; each set weighted equally; hybrid scorer: {args.kind}"
                + (f" (ListNet, l2={args.l2})" if args.kind == "linear" else
                   " (gradient-boosted trees, log loss)")
                + "; Platt calibration on each query's top 20."
            ),
        )
        path = args.out or ROOT / "kbsearch" / "weights" / "default.json"
        path.write_text(json.dumps(model.to_json(), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
