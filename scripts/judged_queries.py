#!/usr/bin/env python
"""Rank the knowledge base's judged queries against the current index and score them.

Usage: scripts/judged_queries.py [--judgments FILE] [--query TEXT ...] [--json]

Each judged query (``KBSEARCH_JUDGMENTS``, by default ``articles/judgments.tsv``) is
searched like an agent would (internal articles too, the weights in use, nothing logged),
and the script prints nDCG@10 and MRR@10 over all of them, and for each query the rank
and probability of its best-placed relevant article (rank 0: not in the top 100).
``--query`` prints only the named queries' lines (the summary is still over all).
The index is the configured one (``KBSEARCH_INDEX``); build it with ``kbsearch index``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from kbsearch.config import load_settings
from kbsearch.learning.evaluation import load_judgments
from kbsearch.learning.metrics import mrr_at, ndcg_at
from kbsearch.service import SearchService

DEPTH = 100


def main() -> int:
    """Print the judged queries' figures as a table or JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judgments", type=Path, help="judged queries (default: the setting)")
    parser.add_argument("--query", action="append", default=[], help="show only this query")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    settings = load_settings()
    service = SearchService(settings)
    known = [a.id for a in service.index().articles]
    judgments = load_judgments(args.judgments or settings.judgments, known)
    rows = []
    for judgment in judgments:
        response = service.search(judgment.query, log=False, k=DEPTH, visibility="internal")
        ids = [r.article.id for r in response.results]
        position = next((i for i, a in enumerate(ids) if a in judgment.relevant), None)
        rows.append({
            "query": judgment.query,
            "relevant": sorted(judgment.relevant),
            "rank": 0 if position is None else position + 1,
            "probability": (0.0 if position is None
                            else round(response.results[position].hit.probability, 4)),
            "first": ids[0] if ids else None,
            "ndcg@10": ndcg_at(ids, judgment.relevant, 10),
            "mrr@10": mrr_at(ids, judgment.relevant, 10),
        })
    summary = {
        "index_version": service.index().version,
        "queries": len(rows),
        "ndcg@10": round(float(np.mean([r["ndcg@10"] for r in rows])), 4),
        "mrr@10": round(float(np.mean([r["mrr@10"] for r in rows])), 4),
        "top1": round(float(np.mean([r["rank"] == 1 for r in rows])), 4),
    }
    shown = [r for r in rows if not args.query or r["query"] in args.query]
    if args.json:
        print(json.dumps({**summary, "results": shown}, ensure_ascii=False, indent=2))
        return 0
    for row in shown:
        print(f"{row['rank']:>4}  {row['probability']:.2f}  {row['query']}  "
              f"(first: {row['first']})")
    print(f"{summary['queries']} judged queries: nDCG@10 {summary['ndcg@10']:.4f}, "
          f"MRR@10 {summary['mrr@10']:.4f}, top-1 {summary['top1']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
