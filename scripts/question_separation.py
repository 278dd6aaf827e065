#!/usr/bin/env python
"""How well learned questions can tell a judged set's articles apart: to read a feedback gain.

Usage: scripts/question_separation.py DATASET_DIR [DATASET_DIR ...] [--floors 0.88,0.9,0.92]
                                      [--json]

Learned questions (kbsearch/ranking/memory.py) carry feedback to new queries: a query
counts as one of an article's questions when its cosine with one of them is above the
question floor (``KBSEARCH_QUESTION_FLOOR``). For every judged query of a BEIR set this
prints two cosines with the set's other queries (the configured model, query side):

- *same*: the closest query judged to be solved by one of the same articles (another user
  asking for the same thing; queries without one are left out);
- *other*: the closest query with none of its articles (another user asking for something
  else).

Where *same* stands well above *other* (many paraphrases of one need), learned questions
lift new queries; where the two overlap (short colloquial queries, different questions
about one article), they cannot, whatever the floor. For each floor: the share of queries
whose *same* and whose *other* is above it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from kbsearch.config import load_settings
from kbsearch.learning.evaluation import load_dataset
from kbsearch.service import default_embedder

QUANTILES = (10, 25, 50, 75, 90)


def closest_cosines(
    vectors: np.ndarray, solved_by: Sequence[frozenset[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """Return each query's closest cosine with a query sharing an article, and without one.

    ``vectors`` are the queries' unit vectors, ``solved_by`` the articles judged to solve
    each. The first array leaves out queries that share an article with no other query.
    """
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    same, other = [], []
    for i, articles in enumerate(solved_by):
        shares = np.array([bool(articles & others) for others in solved_by])
        shares[i] = False
        if shares.any():
            same.append(float(similarity[i][shares].max()))
        rest = ~shares
        rest[i] = False
        if rest.any():
            other.append(float(similarity[i][rest].max()))
    return np.array(same), np.array(other)


def separation(same: np.ndarray, other: np.ndarray,
               floors: Sequence[float]) -> dict[str, object]:
    """Return the quantiles of both cosines and the share of each above every floor."""
    def quantiles(values: np.ndarray) -> dict[str, float]:
        if not len(values):
            return {}
        return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in QUANTILES}

    return {
        "queries_with_same": len(same), "queries": len(other),
        "same": quantiles(same), "other": quantiles(other),
        "above_floor": {
            f"{floor:g}": {"same": round(float((same > floor).mean()), 3) if len(same) else 0.0,
                           "other": round(float((other > floor).mean()), 3)
                           if len(other) else 0.0}
            for floor in floors},
    }


def main() -> int:
    """Print the separation of each dataset's queries."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--floors", default="0.86,0.88,0.9,0.92",
                        help="comma-separated question floors to report")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    try:
        floors = [float(f) for f in args.floors.split(",") if f]
    except ValueError:
        parser.error(f"--floors: {args.floors!r} is not a list of numbers")
    embedder = default_embedder(load_settings())
    report: dict[str, Mapping[str, object]] = {}
    for folder in args.datasets:
        dataset = load_dataset(folder)
        ids = sorted(dataset.queries)
        vectors = embedder.embed_queries([dataset.queries[q] for q in ids])
        same, other = closest_cosines(
            np.asarray(vectors), [frozenset(dataset.qrels[q]) for q in ids])
        words = [len(dataset.queries[q].split()) for q in ids]
        report[dataset.name] = {"median_words": float(np.median(words)),
                                **separation(same, other, floors)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for name, figures in report.items():
        print(f"{name}: {figures['queries']} queries ({figures['queries_with_same']} with "
              f"another query for the same article), median {figures['median_words']:g} "
              "words")
        for side in ("same", "other"):
            cells = "  ".join(f"{k} {v:.3f}" for k, v in figures[side].items())  # type: ignore[attr-defined]
            print(f"  {side:5s} {cells}")
        for floor, shares in figures["above_floor"].items():  # type: ignore[attr-defined]
            print(f"  above {floor}: same {shares['same']:.2f}, other {shares['other']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
