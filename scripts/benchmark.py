#!/usr/bin/env python
"""Measure index build time and in-process search latency on the bundled sample KB.

Usage: scripts/benchmark.py [--searches 200] [--json]

Builds a fresh index of articles/ into a temporary folder (cold: every chunk embedded),
rebuilds it unchanged (warm: every vector reused), then runs searches one at a time
through SearchService (each logged to a throwaway feedback store, as in production) and
reports the median and 95th percentile latency, and the peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kbsearch.config import load_settings
from kbsearch.index.builds import build_index
from kbsearch.service import SearchService, default_embedder

QUERIES = [
    "Wie melde ich meinen Zählerstand?", "zaehlerstand", "Abschlag ändern", "Router blinkt rot",
    "Internet geht nicht", "Nummer mitnehmen", "Roaming Schweiz", "Rechnung zu hoch",
    "Kündigung Strom", "SEPA Lastschrift ändern", "Passwort vergessen", "Öffnungszeiten",
    "Solaranlage Einspeisevergütung", "Wallbox anmelden", "pay by bank transfer",
    "How do I submit my meter reading?", "moving house electricity", "WLAN langsam",
    "eSIM aktivieren", "Guthaben auszahlen",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    settings = load_settings()
    started = time.perf_counter()
    embedder = default_embedder(settings)
    model_load = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "index"
        cold = build_index(settings.articles, index_dir, embedder)
        warm = build_index(settings.articles, index_dir, embedder)
        service = SearchService(
            settings.replace(index=index_dir, feedback_db=Path(tmp) / "feedback.sqlite3",
                             weights_dir=Path(tmp) / "weights"),
            embedder=embedder,
        )
        service.warm_up()
        latencies = []
        for i in range(args.searches):
            t = time.perf_counter()
            service.search(QUERIES[i % len(QUERIES)], k=10)
            latencies.append((time.perf_counter() - t) * 1000)
    latencies.sort()
    figures = {
        "articles": cold.articles,
        "chunks": cold.chunks,
        "model_load_s": round(model_load, 2),
        "build_cold_s": round(cold.seconds, 2),
        "build_warm_s": round(warm.seconds, 2),
        "searches": len(latencies),
        "search_median_ms": round(statistics.median(latencies), 1),
        "search_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:18s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
