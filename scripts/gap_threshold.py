#!/usr/bin/env python
"""How well each cosine distance threshold groups content gaps into their needs.

Usage: scripts/gap_threshold.py [SOURCE ...] [--thresholds 0.10,0.12,...] [--sample N]
       [--min-size 3] [--json]

A SOURCE is a TSV file of ``need<TAB>query`` lines (default: tests/data/gap_queries.tsv,
sixty questions the sample knowledge base does not answer, ten needs asked six ways) or a
BEIR folder (queries.jsonl, qrels.tsv), where queries judged to the same articles share a
need (stackfaq_en: ten rephrasings per need). The queries are embedded with the configured
model (KBSEARCH_MODEL), stored as float16 as the search log stores them, and clustered by
kbsearch's content-gap clustering (complete linkage on cosine distance) at each threshold.
``--sample N`` also takes N needs of each source with more at random (seeds 0, 1, 2), for
gap-sized sets.

Per source and threshold it prints: the number of groups; the adjusted Rand index against
the needs; the purity of the groups of at least --min-size queries (share of their queries
that belong to the group's most common need: what an editor sees); the share of queries in
such groups; and how many needs lead at least one such group.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from kbsearch.config import load_settings
from kbsearch.learning.gaps import GAP_DISTANCE, cluster
from kbsearch.service import default_embedder

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT / "tests" / "data" / "gap_queries.tsv"
THRESHOLDS = (0.10, 0.12, 0.13, 0.14, 0.15, 0.16, 0.18)


def read_source(path: Path) -> tuple[list[str], list[str]]:
    """Return the queries of a TSV file or BEIR folder and the need of each."""
    if path.is_dir():
        relevant: dict[str, set[str]] = {}
        for line in (path / "qrels.tsv").read_text("utf-8").splitlines()[1:]:
            query_id, doc_id, score = line.split("\t")
            if float(score) > 0:
                relevant.setdefault(query_id, set()).add(doc_id)
        rows = [json.loads(line) for line in (path / "queries.jsonl").open(encoding="utf-8")]
        kept = [r for r in rows if r["_id"] in relevant]
        return [r["text"] for r in kept], [",".join(sorted(relevant[r["_id"]])) for r in kept]
    pairs = [line.split("\t") for line in path.read_text("utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    return [query for _, query in pairs], [need for need, _ in pairs]


def measure(labels: list[str], groups: np.ndarray, min_size: int) -> dict[str, float]:
    """Return the figures of one grouping against the needs."""
    from sklearn.metrics import adjusted_rand_score

    members: dict[int, list[str]] = {}
    for need, group in zip(labels, groups, strict=True):
        members.setdefault(int(group), []).append(need)
    kept = [m for m in members.values() if len(m) >= min_size]
    majority = [Counter(m).most_common(1)[0] for m in kept]
    size = sum(map(len, kept))
    return {
        "groups": len(members),
        "ari": round(float(adjusted_rand_score(labels, groups)), 3),
        "purity": round(sum(n for _, n in majority) / size, 3) if size else 0.0,
        "coverage": round(size / len(labels), 3),
        "needs_found": len({need for need, _ in majority}),
        "needs": len(set(labels)),
    }


def main() -> int:
    """Embed, cluster at each threshold and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", type=Path, default=[DEFAULT_SOURCE])
    parser.add_argument("--thresholds", default=",".join(f"{t:g}" for t in THRESHOLDS))
    parser.add_argument("--sample", type=int, default=0, help="needs per sample (0: all)")
    parser.add_argument("--min-size", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    embedder = default_embedder(load_settings())
    results: dict[str, dict[str, dict[str, float]]] = {}
    for source in args.sources:
        texts, labels = read_source(source)
        vectors = embedder.embed_queries(texts).astype(np.float16).astype(np.float32)
        sets = {source.name: (vectors, labels)}
        needs = sorted(set(labels))
        if 0 < args.sample < len(needs):
            for seed in range(3):
                chosen = set(np.random.default_rng(seed).choice(needs, args.sample,
                                                                replace=False))
                rows = [i for i, need in enumerate(labels) if need in chosen]
                sets[f"{source.name} ({args.sample} needs, seed {seed})"] = (
                    vectors[rows], [labels[i] for i in rows])
        for name, (matrix, needs_of) in sets.items():
            results[name] = {f"{t:g}": measure(needs_of, cluster(matrix, t), args.min_size)
                             for t in thresholds}
    if args.json:
        print(json.dumps({"default": GAP_DISTANCE, "results": results}, indent=2))
        return 0
    for name, by_threshold in results.items():
        print(f"{name}  (kbsearch's threshold: {GAP_DISTANCE:g})")
        print("  threshold  groups    ARI  purity  coverage  needs found")
        for t, m in by_threshold.items():
            print(f"  {t:>9}  {m['groups']:6d}  {m['ari']:5.3f}  {m['purity']:6.3f}  "
                  f"{m['coverage']:8.3f}  {m['needs_found']}/{m['needs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
