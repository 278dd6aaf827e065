#!/usr/bin/env python
"""Measure how long ``kbsearch train`` takes on a large feedback log.

Usage: scripts/benchmark_training.py [--events 100000] [--seed 0] [--json]

Writes a synthetic log into a temporary SQLite store: searches over 300 articles, each
showing ten results with random retrieval features ranked by the shipped weights and a
384-dimension query vector, and position-biased clicks plus helpful / not helpful verdicts
from many clients, until the log holds the asked number of events. Then times one full
training run (reading the log, propensity EM, listwise fit, calibration, learned
questions, held-out check, writing the version), which is what the target is about.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kbsearch.learning.train import TrainOptions, train
from kbsearch.ranking.scoring import FEATURES, Candidates, load_ranking_model, rank
from kbsearch.ranking.versions import WeightsStore
from kbsearch.stores.feedback import FeedbackEvent, SearchLog, ShownResult
from kbsearch.stores.feedback_sqlite import SQLiteFeedbackStore

ARTICLES = 300
NOW = 1_700_000_000.0


def synthetic_log(store: SQLiteFeedbackStore, events_wanted: int, seed: int) -> tuple[int, int]:
    """Fill the store; return (searches, events)."""
    rng = np.random.default_rng(seed)
    model = load_ranking_model().for_mode("hybrid")
    topics = rng.normal(size=(ARTICLES, 384)).astype(np.float32)
    searches: list[SearchLog] = []
    events: list[FeedbackEvent] = []
    n = 0
    while len(events) < events_wanted:
        pool = rng.choice(ARTICLES, 30, replace=False)
        dense = rng.uniform(0.75, 0.9, 30)
        bm25 = rng.uniform(0, 10, 30)
        candidates = Candidates(
            ids=tuple(f"a{i}" for i in pool), dense=dense,
            title_sim=rng.uniform(0.7, 0.9, 30), bm25=bm25, bm25_title=bm25 * rng.random(30),
            bm25_body=bm25 * rng.random(30), coverage=rng.random(30),
            dense_rank=np.argsort(np.argsort(-dense)), keyword_rank=np.argsort(np.argsort(-bm25)),
        )
        hits = rank(candidates, model, 10)
        relevant = hits[int(rng.integers(0, 10))].id
        vector = topics[int(relevant[1:])] + rng.normal(0, 0.3, 384).astype(np.float32)
        search_id = f"s{n}"
        client = f"client{rng.integers(0, 20_000)}"
        searches.append(SearchLog(
            search_id, NOW + n, f"query {n}", "de", "faq", client, "v", "default", FEATURES,
            vector / np.linalg.norm(vector),
            tuple(ShownResult(h.id, p, h.probability, tuple(h.scores[f] for f in FEATURES))
                  for p, h in enumerate(hits, start=1)),
        ))
        for position, hit in enumerate(hits, start=1):
            if rng.random() < 1.0 / position:
                good = hit.id == relevant
                if rng.random() < (0.85 if good else 0.1):
                    events.append(FeedbackEvent(search_id, hit.id, "click", position, "faq",
                                                client, NOW + n))
                    verdict = "helpful" if good else "not_helpful"
                    if rng.random() < 0.6:
                        events.append(FeedbackEvent(search_id, hit.id, verdict, position,
                                                    "faq", client, NOW + n))
        n += 1
    store.log_searches(searches)
    store.add_events(events[:events_wanted])
    return len(searches), min(len(events), events_wanted)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kbsearch-train-bench-") as tmp:
        store = SQLiteFeedbackStore(Path(tmp) / "feedback.sqlite3")
        started = time.perf_counter()
        searches, events = synthetic_log(store, args.events, args.seed)
        written = time.perf_counter() - started
        started = time.perf_counter()
        outcome = train(store, WeightsStore(Path(tmp) / "weights"),
                        TrainOptions(now=NOW + searches))
        seconds = time.perf_counter() - started
        store.close()
    figures = {
        "searches": searches, "events": events, "log_written_s": round(written, 1),
        "train_s": round(seconds, 1), "promoted": outcome.promoted,
        "learned_questions": outcome.report["learned_questions"],
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
