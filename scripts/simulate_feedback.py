#!/usr/bin/env python
"""Replay a judged dataset's queries as users, train on their feedback, report each round.

Usage: scripts/simulate_feedback.py DATASET_DIR [--sessions N] [--rounds R] [--seed S] [--json]
                                    [--start-weights FILE] [--keep DIR]

The dataset (a BEIR folder) is indexed once (cached under build/simulate/, or --cache).
Its queries are split, seeded, into training queries (80 %) and held-out queries (20 %);
held-out queries are never searched by simulated users. Each round runs N / R sessions
through the real SearchService, feedback store and ``kbsearch train`` code (in a
throwaway folder):

- a session picks a training query at random and searches (top 10 shown);
- the user scans down the list; position k is examined with probability 1 / k (a
  position-based click model, Craswell et al., WSDM 2008), and an examined result is
  clicked with probability 0.85 if it is relevant, 0.10 if not (misleading clicks);
- after clicking a relevant article the user says "helpful" (60 %) or "resolved" (25 %);
  after an irrelevant one, "not helpful" (50 %), and 3 % answer "helpful" anyway (noise);
- at the end of the round, training runs and promotes the new weights only if they are not
  worse on held-out feedback.

The untrained ranking is the shipped weights, or with --start-weights a weights file (such
as one that scripts/fit_weights.py --out fitted without this dataset, so that no model has
seen the held-out queries' judgments before the simulated users arrive).

After each round the current ranking is scored on the held-out queries: nDCG@10, MRR@10 and
ECE (10 bins, over each top 10). Round 0 is the untrained ranking. Each round is also
scored apart on the held-out queries whose article has learned questions at the end
("learned": users asked that article something and it helped) and on the rest: learned
questions lift the first group, the feature weights alone the second. With --json one
object is printed: {"rounds": [{"round", "sessions", "ndcg@10", "mrr@10", "ece",
"learned": {"queries", "ndcg@10", "mrr@10"}, "rest": {...}, ...}, ...]}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kbsearch.config import load_settings
from kbsearch.index.builds import current_version
from kbsearch.index.retrieval import SearchRequest
from kbsearch.learning.evaluation import Dataset, index_dataset, load_dataset
from kbsearch.learning.metrics import expected_calibration_error, mrr_at, ndcg_at
from kbsearch.learning.train import TrainingError, TrainOptions
from kbsearch.learning.train import train as run_training
from kbsearch.ranking.versions import default_ranker
from kbsearch.service import SearchService, default_embedder

ROOT = Path(__file__).resolve().parent.parent
EXAMINATION_POWER = 1.0
CLICK_RELEVANT, CLICK_IRRELEVANT = 0.85, 0.10
HELPFUL, RESOLVED = 0.60, 0.25
NOT_HELPFUL, FALSE_HELPFUL = 0.50, 0.03


class CachedQueries:
    """An embedder whose query vectors are computed once, in batches, for known queries."""

    def __init__(self, embedder, queries: Sequence[str]) -> None:
        self.inner = embedder
        self.dimension = embedder.dimension
        vectors = embedder.embed_queries(list(queries))
        self.vectors = {q: v for q, v in zip(queries, vectors, strict=True)}

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self.vectors]
        if missing:
            for text, vector in zip(missing, self.inner.embed_queries(missing), strict=True):
                self.vectors[text] = vector
        return np.vstack([self.vectors[t] for t in texts])

    def embed_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        return self.inner.embed_passages(texts, progress)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def cached_index(dataset: Dataset, cache: Path, embedder, settings) -> Path:
    """Index the dataset once into <cache>/<name>-<hash>/ and reuse it."""
    digest = hashlib.sha256(
        "".join(sorted(a.content_hash for a in dataset.documents)).encode()
    ).hexdigest()[:12]
    index_dir = cache / f"{dataset.name}-{digest}"
    if current_version(index_dir) is None:
        print(f"indexing {dataset.name} into {index_dir} (once)", file=sys.stderr)
        index_dataset(dataset, index_dir, embedder, settings, progress=True)
    return index_dir


def evaluate(service: SearchService, dataset: Dataset, queries: Sequence[str],
             ) -> tuple[dict, dict[str, tuple[float, float]]]:
    """Score the current ranking on held-out queries (nothing is logged).

    Returns the averages and each query's (nDCG@10, MRR@10), for :func:`split_by_memory`.
    """
    index, ranker = service.index(), service.ranker()
    per_query: dict[str, tuple[float, float]] = {}
    probs, outcomes = [], []
    for query_id in queries:
        text = dataset.queries[query_id]
        vector = service.embedder.embed_queries([text])[0]
        request = SearchRequest(query=text, k=10)
        hits = service.rank(service.candidates(index, request, vector, ranker), "hybrid", 10,
                            ranker)
        relevant = dataset.qrels[query_id]
        ids = [h.id for h in hits]
        per_query[query_id] = (ndcg_at(ids, relevant, 10), mrr_at(ids, relevant, 10))
        probs += [h.probability for h in hits]
        outcomes += [h.id in relevant for h in hits]
    ndcg, mrr = zip(*per_query.values(), strict=True) if per_query else ((), ())
    return {"ndcg@10": round(float(np.mean(ndcg)), 4), "mrr@10": round(float(np.mean(mrr)), 4),
            "ece": round(expected_calibration_error(probs, outcomes), 4)}, per_query


def split_by_memory(per_query: dict[str, tuple[float, float]], dataset: Dataset,
                    learned: set[str]) -> dict[str, dict[str, float]]:
    """Average one round's figures apart for queries whose article has learned questions.

    ``learned`` holds the articles with learned questions at the end of the simulation, so
    every round is split the same way: "learned" are the held-out queries with a relevant
    article among them (users asked something like it), "rest" the others.
    """
    groups: dict[str, list[tuple[float, float]]] = {"learned": [], "rest": []}
    for query_id, figures in per_query.items():
        group = "learned" if learned & set(dataset.qrels[query_id]) else "rest"
        groups[group].append(figures)
    return {name: {"queries": len(rows),
                   "ndcg@10": round(float(np.mean([r[0] for r in rows])), 4) if rows else 0.0,
                   "mrr@10": round(float(np.mean([r[1] for r in rows])), 4) if rows else 0.0}
            for name, rows in groups.items()}


def session(service: SearchService, dataset: Dataset, query_id: str, user: str,
            rng: np.random.Generator) -> int:
    """Simulate one user's search and feedback; return the number of events sent."""
    response = service.search(dataset.queries[query_id], channel="faq", client=user, k=10)
    relevant = dataset.qrels[query_id]
    sent = 0
    for position, result in enumerate(response.results, start=1):
        if rng.random() >= 1.0 / position**EXAMINATION_POWER:
            continue
        good = result.article.id in relevant
        if rng.random() >= (CLICK_RELEVANT if good else CLICK_IRRELEVANT):
            continue
        events = ["click"]
        draw = rng.random()
        if good and draw < HELPFUL:
            events.append("helpful")
        elif good and draw < HELPFUL + RESOLVED:
            events.append("resolved")
        elif not good and draw < NOT_HELPFUL:
            events.append("not_helpful")
        elif not good and draw < NOT_HELPFUL + FALSE_HELPFUL:
            events.append("helpful")
        for event in events:
            service.record_feedback(response.search_id, result.article.id, event,
                                    channel="faq", client=user, token=response.feedback_token)
            sent += 1
    return sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--sessions", type=int, default=2000, help="sessions in all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--verbose", action="store_true", help="print each training report")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "simulate",
                        help="folder for the dataset's index, built once and reused")
    parser.add_argument("--start-weights", type=Path, default=None, metavar="FILE",
                        help="start from these ranking weights (a JSON written by "
                             "scripts/fit_weights.py --out) instead of the shipped ones")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep the feedback database and weights in DIR (must not exist)")
    args = parser.parse_args()
    if args.sessions < 0 or args.rounds < 1:
        parser.error("--sessions must be >= 0 and --rounds >= 1")
    if args.start_weights is not None and not args.start_weights.is_file():
        parser.error(f"--start-weights {args.start_weights}: no such file")

    started = time.perf_counter()
    dataset = load_dataset(args.dataset)
    settings = load_settings()
    embedder = default_embedder(settings)
    rng = np.random.default_rng(args.seed)
    query_ids = sorted(dataset.queries)
    shuffled = list(rng.permutation(query_ids))
    cut = len(shuffled) // 5
    held_out, training = sorted(shuffled[:cut]), sorted(shuffled[cut:])
    rows = []
    if args.keep is not None and args.keep.exists():
        parser.error(f"--keep {args.keep}: already exists")
    with tempfile.TemporaryDirectory(prefix="kbsearch-simulate-") as scratch:
        tmp = str(args.keep) if args.keep is not None else scratch
        index_dir = cached_index(dataset, args.cache, embedder, settings)
        cached = CachedQueries(embedder, [dataset.queries[q] for q in query_ids])
        run_settings = settings.replace(
            index=index_dir, feedback_db=Path(tmp) / "feedback.sqlite3",
            weights_dir=Path(tmp) / "weights", weights="",
        )
        service = SearchService(run_settings, embedder=cached)
        if args.start_weights is not None:
            start = service.weights.save(default_ranker(args.start_weights), "",
                                         {"source": str(args.start_weights)})
            service.weights.promote(start, f"starting weights {args.start_weights}")
        options = TrainOptions.from_settings(run_settings)
        summary, per_query = evaluate(service, dataset, held_out)
        rows.append({"round": 0, "sessions": 0, **summary, "promoted": None, "events": 0})
        per_round = [per_query]
        done, events = 0, 0
        for round_number in range(1, args.rounds + 1):
            count = args.sessions * round_number // args.rounds - done
            for i in range(count):
                user = f"user-{done + i}"
                events += session(service, dataset, str(rng.choice(training)), user, rng)
            done += count
            try:
                outcome = run_training(service.feedback, service.weights, options)
                promoted, reason = outcome.promoted, outcome.reason
            except TrainingError as exc:
                promoted, reason = False, str(exc)
            service.ranker(refresh=True)
            summary, per_query = evaluate(service, dataset, held_out)
            rows.append({"round": round_number, "sessions": done, **summary,
                         "promoted": promoted, "events": events})
            per_round.append(per_query)
            print(f"round {round_number}: {done} sessions, {reason}", file=sys.stderr)
            if args.verbose and promoted is not None and "outcome" in locals():
                print(json.dumps(outcome.report), file=sys.stderr)
                document = service.weights.document(outcome.version)
                print(json.dumps(document["model"]["modes"]["hybrid"]), file=sys.stderr)
        learned = set(service.ranker().questions.article_ids)
        for row, per_query in zip(rows, per_round, strict=True):
            row.update(split_by_memory(per_query, dataset, learned))
        service.feedback.close()
    seconds = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps({"dataset": dataset.name, "held_out_queries": len(held_out),
                          "seconds": seconds, "rounds": rows}))
        return 0
    print(f"{dataset.name}: {len(training)} training queries, {len(held_out)} held out, "
          f"seed {args.seed}, {seconds} s")
    learned, rest = rows[0]["learned"]["queries"], rows[0]["rest"]["queries"]
    print(f"{'round':>5} {'sessions':>8} {'events':>7} {'nDCG@10':>8} {'MRR@10':>7} "
          f"{'ECE':>6} {'MRR learned':>11} {'MRR rest':>8}  promoted")
    for row in rows:
        print(f"{row['round']:>5} {row['sessions']:>8} {row['events']:>7} "
              f"{row['ndcg@10']:>8.4f} {row['mrr@10']:>7.4f} {row['ece']:>6.4f} "
              f"{row['learned']['mrr@10']:>11.4f} {row['rest']['mrr@10']:>8.4f}  "
              f"{'' if row['promoted'] is None else row['promoted']}")
    print(f"learned: the {learned} held-out queries whose article has learned questions at "
          f"the end; rest: the other {rest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
