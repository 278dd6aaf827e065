#!/usr/bin/env python
"""How far the embedding model alone goes on a judged set: single signals and fixed blends.

Usage: scripts/dense_ceiling.py DATASET_DIR [--json]

Every query is scored against every document exhaustively (no index, no keyword side), and
nDCG@10 is printed for each way of using the model:

- full:            query vs "title\\nbody" embedded as a passage (the dense retriever)
- title:           query vs the title as a passage (the ``title_sim`` feature)
- title_as_query:  query vs the title embedded with the query prompt (symmetric matching)
- body:            query vs the body alone
- full_as_query:   query vs "title\\nbody" embedded with the query prompt
- prf:             the query moved towards its three best full matches (Rocchio pseudo
                   relevance feedback, weight 0.3), then full
- maxsim:          token-level late interaction (ColBERT-style MaxSim over the model's token
                   vectors, query vs "title\\nbody")
- length_prior:    full plus 0.004 x log(body words) (longer answers as more complete)

and then the best blend full + a*title + b*title_as_query + c*maxsim over a grid, tuned on
the set itself: an in-sample, optimistic ceiling for any fixed weighting of these signals.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from kbsearch.config import load_settings
from kbsearch.learning.evaluation import load_dataset
from kbsearch.learning.metrics import ndcg_at
from kbsearch.service import default_embedder

GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def ndcg(scores: np.ndarray, doc_ids: list[str], query_ids: list[str], qrels) -> float:
    """Mean nDCG@10 of rankings by ``scores`` (queries x documents)."""
    top = np.argsort(-scores, axis=1)[:, :10]
    return float(np.mean([
        ndcg_at([doc_ids[j] for j in row], qrels[q], 10)
        for row, q in zip(top, query_ids, strict=True)
    ]))


def token_vectors(model, texts: list[str], prompt: str) -> list[np.ndarray]:
    """Unit token vectors of each text, special tokens dropped."""
    out = model.encode(texts, prompt=prompt, output_value="token_embeddings", batch_size=32)
    vectors = []
    for matrix in out:
        m = matrix.float().numpy()[1:-1]
        vectors.append(m / np.linalg.norm(m, axis=1, keepdims=True))
    return vectors


def maxsim(queries: list[np.ndarray], documents: list[np.ndarray]) -> np.ndarray:
    """ColBERT MaxSim: mean over query tokens of the best matching document token."""
    return np.array([[float((q @ d.T).max(axis=1).mean()) for d in documents]
                     for q in queries])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    dataset = load_dataset(args.dataset)
    # the token vectors are read from sentence-transformers' model
    embedder = default_embedder(load_settings().replace(inference="sentence-transformers"))
    doc_ids = [d.id for d in dataset.documents]
    query_ids = sorted(q for q in dataset.queries if dataset.qrels.get(q))
    qrels = {q: dataset.qrels[q] for q in query_ids}
    texts = [dataset.queries[q] for q in query_ids]
    titles = [d.title for d in dataset.documents]
    bodies = [d.body for d in dataset.documents]
    fulls = [f"{t}\n{b}" for t, b in zip(titles, bodies, strict=True)]

    query = embedder.embed_queries(texts)
    full = embedder.embed_passages(fulls, progress=True)
    signals = {
        "full": query @ full.T,
        "title": query @ embedder.embed_passages(titles).T,
        "title_as_query": query @ embedder.embed_queries(titles).T,
        "body": query @ embedder.embed_passages(bodies).T,
        "full_as_query": query @ embedder.embed_queries(fulls).T,
    }
    best3 = np.argsort(-signals["full"], axis=1)[:, :3]
    moved = query + 0.3 * full[best3].mean(axis=1)
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    signals["prf"] = moved @ full.T
    model = embedder._model  # noqa: SLF001 - a research script reads the token vectors
    signals["maxsim"] = maxsim(token_vectors(model, texts, embedder.query_prompt),
                               token_vectors(model, fulls, embedder.passage_prompt))
    words = np.log1p([len(b.split()) for b in bodies])
    signals["length_prior"] = signals["full"] + 0.004 * words[None, :]

    report = {name: round(ndcg(s, doc_ids, query_ids, qrels), 4) for name, s in signals.items()}
    best = (-1.0, (0.0, 0.0, 0.0))
    for a, b, c in itertools.product(GRID, GRID, GRID):
        blend = (signals["full"] + a * signals["title"] + b * signals["title_as_query"]
                 + c * signals["maxsim"])
        best = max(best, (ndcg(blend, doc_ids, query_ids, qrels), (a, b, c)))
    report["best_blend_in_sample"] = round(best[0], 4)
    report["best_blend_weights"] = dict(zip(("title", "title_as_query", "maxsim"), best[1],
                                            strict=True))
    if args.json:
        print(json.dumps({"dataset": dataset.name, "queries": len(query_ids), **report}))
        return 0
    print(f"{dataset.name}: {len(query_ids)} queries, nDCG@10")
    for name, value in report.items():
        print(f"  {name:22s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
