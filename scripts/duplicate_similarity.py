#!/usr/bin/env python
"""How similar the closest sections of a knowledge base's articles are: to choose a threshold.

Usage: scripts/duplicate_similarity.py [--articles DIR] [--index DIR] [--top N] [--json]

For every pair of non-archived articles of the same language (an article and its
translations left out), the cosine of their closest sections, as ``kbsearch check`` computes
it (the current index build's vectors where the files are unchanged, else the configured
model). Prints the quantiles of those cosines, how many pairs each threshold would report,
and the closest pairs: a pair above ``KBSEARCH_CHECK_DUPLICATE_SIMILARITY`` is reported as a
near-duplicate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kbsearch.config import load_settings
from kbsearch.content.articles import load_articles
from kbsearch.learning.duplicates import near_duplicates, section_vectors
from kbsearch.service import default_embedder

THRESHOLDS = (0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)


def main() -> None:
    """Print the distribution of closest-section cosines over the article pairs."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=Path, help="articles folder (default: the setting)")
    parser.add_argument("--index", type=Path, help="index folder (default: the setting)")
    parser.add_argument("--top", type=int, default=10, help="closest pairs to list")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    settings = load_settings(articles=args.articles, index=args.index)
    articles = [a for a in load_articles(settings.articles, settings.languages).articles
                if a.status != "archived"]
    sections = section_vectors(articles, settings.index, lambda: default_embedder(settings),
                               settings.chunk_tokens)
    pairs = near_duplicates(articles, sections.vectors, threshold=-1.0)
    cosines = np.array([p.similarity for p in pairs])
    result = {
        "articles": len(articles),
        "pairs": len(pairs),
        "vectors": sections.source,
        "quantiles": {q: round(float(np.quantile(cosines, float(q))), 3)
                      for q in ("0.5", "0.9", "0.99", "1")} if len(pairs) else {},
        "pairs_at_or_above": {f"{t:.2f}": int((cosines >= t).sum()) for t in THRESHOLDS},
        "closest": [{"first": p.first.id, "second": p.second.id,
                     "similarity": round(p.similarity, 3),
                     "sections": [p.overlaps[0].first_heading, p.overlaps[0].second_heading]}
                    for p in pairs[: args.top]],
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    print(f"{result['articles']} articles, {result['pairs']} same-language pairs "
          f"({result['vectors']})")
    print("closest-section cosine, quantiles:", ", ".join(
        f"{q}: {v}" for q, v in result["quantiles"].items()))
    for threshold, count in result["pairs_at_or_above"].items():
        print(f"  >= {threshold}: {count} pairs")
    for pair in result["closest"]:
        print(f"{pair['similarity']:.3f}  {pair['first']} ~ {pair['second']}  "
              f"({pair['sections'][0]!r} ~ {pair['sections'][1]!r})")


if __name__ == "__main__":
    main()
