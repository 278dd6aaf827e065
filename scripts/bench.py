#!/usr/bin/env python
"""Benchmark kbsearch on generated knowledge bases of 1k to 1M articles.

Usage: scripts/bench.py [--sizes sample,1k,10k,100k,1M] [--seed 1] [--json] [--workdir DIR]

For each size, a seeded knowledge base of real, recombined German and English text is
written into a temporary folder (scripts/bench_kb.py; ``sample`` is the bundled one), and:
a full index build (articles/s), reindex after changing 1 and 100 articles, recall@10 of
the FAISS index against exact search, in-process latency, HTTP latency with one client and
throughput with 8 concurrent clients against a real ``kbsearch serve`` (its defaults: one
gunicorn worker, 4 threads; rate limits off), resident memory per worker and index size.
The floor, one bare query embedding through sentence-transformers (batch 1), is measured
in the same run. From ``--synthetic-from`` articles (100k) the dense part is built from
seeded synthetic vectors (bench_kb.ClusteredEmbedder) instead of the model: their build
throughput is left out (null) and the figure without embedding given beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))
from bench_kb import (  # noqa: E402 - the sibling module, found through the path above
    ClusteredEmbedder,
    Sources,
    change_articles,
    load_sources,
    mixed_queries,
    write_kb,
)

from kbsearch.config import Settings, load_settings  # noqa: E402
from kbsearch.index.builds import BUILDS, build_index, current_version  # noqa: E402
from kbsearch.index.dense import DENSE_FILE, load_faiss, search  # noqa: E402
from kbsearch.index.embedding import Embedder  # noqa: E402
from kbsearch.service import SearchService, default_embedder  # noqa: E402

SIZE_NAMES = {"sample": 0, "1k": 1_000, "10k": 10_000, "100k": 100_000, "1M": 1_000_000}
KEYS = ("build_docs_per_s", "incremental_1_s", "inproc_p50_ms", "http_p50_ms",
        "http_p99_ms", "qps", "rss_mb_per_worker", "index_mb", "recall@10")
CLIENTS = 8
BUILD_FIGURES = "build-figures.json"  # in a --workdir size folder: its base is built
# A build streams chunks and vectors in batches but holds every parsed article (the
# keyword index is written from them): a 1M build (--build-only, generating the articles
# included) peaked at 19.2 GB resident (2026-12-03).
BUILD_BASE_BYTES = 1_500_000_000
BUILD_BYTES_PER_ARTICLE = 18_000
STARTUP_SECONDS = 600  # a 1M index takes minutes to open
SERVE_FAKE = """
import sys
sys.path.insert(0, sys.argv[1])
import kbsearch.service
from bench_kb import ClusteredEmbedder
kbsearch.service.default_embedder = lambda settings: ClusteredEmbedder(seed=int(sys.argv[2]))
from kbsearch.cli import main
main(sys.argv[3:])
"""


class BenchError(Exception):
    """The benchmark cannot go on (a server that does not start, failed searches)."""


@dataclass(frozen=True)
class Size:
    """One knowledge base to measure: its key in the JSON, article count, vector source."""

    key: str
    count: int  # 0: the bundled sample knowledge base
    synthetic: bool


def build_memory_needed(articles: int) -> int:
    """Return about how many bytes building a base of ``articles`` takes at its peak."""
    return BUILD_BASE_BYTES + articles * BUILD_BYTES_PER_ARTICLE


def available_memory() -> int:
    """Return the memory the kernel says is available (MemAvailable), in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise BenchError("cannot read MemAvailable from /proc/meminfo")


def check_build_memory(size: Size, available: int) -> None:
    """Raise BenchError if building ``size`` would need more memory than is available."""
    needed = build_memory_needed(size.count)
    if size.count and needed > available:
        raise BenchError(
            f"building {size.key} articles needs about {needed / 1e9:.0f} GB of memory and "
            f"{available / 1e9:.1f} GB are available; nothing was built "
            "(--ignore-memory builds anyway)")


def parse_sizes(text: str, synthetic_from: int) -> list[Size]:
    """Parse ``--sizes`` (``sample``, ``1k``, ``10k``, ``100k``, ``1M`` or a number)."""
    sizes = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        count = SIZE_NAMES[part] if part in SIZE_NAMES else int(part)
        if count < 0 or (count == 0 and part != "sample"):
            raise argparse.ArgumentTypeError(f"{part!r} is not a size")
        sizes.append(Size("sample" if count == 0 else str(count), count,
                          count >= synthetic_from > 0 or synthetic_from == 0))
    return sizes


def percentile(values: Sequence[float], share: float) -> float:
    """Return the nearest-rank percentile (share in 0..1) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def latency_figures(prefix: str, latencies_ms: Sequence[float]) -> dict[str, float]:
    """Return p50, p95 and p99 of latencies, rounded, under ``prefix``."""
    return {f"{prefix}_p{p}_ms": round(percentile(latencies_ms, p / 100), 1)
            for p in (50, 95, 99)}


def floor_encoder(model: Settings | None, fake_seed: int) -> Callable[[str], Any]:
    """Return a bare query embedding through sentence-transformers: batch 1, no kbsearch.

    ``model`` None (the test hook) gives the synthetic embedder instead.
    """
    if model is None:
        fake = ClusteredEmbedder(seed=fake_seed)
        return lambda query: fake.embed_queries([query])
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model.model), device=model.device)
    return lambda query: st.encode([query], prompt=model.query_prompt, batch_size=1,
                                   normalize_embeddings=True, convert_to_numpy=True)


def measure_floor(encode: Callable[[str], Any], queries: Sequence[str]) -> float:
    """Return the median ms of one bare query embedding (after a warm-up of five)."""
    for query in queries[:5]:
        encode(query)
    times = []
    for query in queries:
        started = time.perf_counter()
        encode(query)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def folder_mb(folder: Path) -> float:
    """Return the size of the files below a folder in MB (10^6 bytes)."""
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6, 1)


def dense_recall(build: Path, query_vectors: np.ndarray, k: int = 10) -> tuple[str, float]:
    """Return the FAISS index's kind and its recall@k against exact search of its vectors."""
    path = build / DENSE_FILE
    index = load_faiss(path) if path.exists() else None  # none: exact search
    vectors = np.load(build / "chunk_vectors.npy", mmap_mode="r")
    exact = faiss.IndexFlatIP(vectors.shape[1])
    for start in range(0, len(vectors), 100_000):
        exact.add(np.ascontiguousarray(vectors[start:start + 100_000], dtype=np.float32))
    _, truth = exact.search(np.ascontiguousarray(query_vectors, dtype=np.float32), k)
    found = []
    for row, vector in enumerate(query_vectors):
        got = set(search(index, vectors, vector, k).rows.tolist())
        wanted = {int(r) for r in truth[row] if r >= 0}
        found.append(len(got & wanted) / max(1, len(wanted)))
    kind = "flat" if index is None else type(index).__name__
    return kind, round(float(np.mean(found)), 4)


def timed_build(articles: Path, index: Path, embedder: Embedder, settings: Settings) -> float:
    """Build the index of ``articles``; return the seconds it took."""
    started = time.perf_counter()
    build_index(articles, index, embedder, chunk_tokens=settings.chunk_tokens,
                exact_limit=settings.exact_limit, languages=settings.languages,
                keep_builds=2)
    return time.perf_counter() - started


def size_settings(base: Settings, folder: Path) -> Settings:
    """Return the settings for one size: its articles, index and stores under ``folder``."""
    return base.replace(
        articles=folder / "articles", index=folder / "index",
        feedback_db=folder / "data" / "feedback.sqlite3", weights_dir=folder / "data" / "w",
        keys_file=folder / "data" / "keys.json", channels_db=folder / "data" / "ch.sqlite3",
        rate_limit="", rate_limit_keyed="", rate_limit_callbacks="")


def inproc_latency(settings: Settings, embedder: Embedder, queries: Sequence[str]) -> list[float]:
    """Return the ms of each search through SearchService (logged, as in production)."""
    service = SearchService(settings, embedder=embedder)
    service.warm_up()
    for query in queries[:5]:
        service.search(query, k=10)
    times = []
    for query in queries:
        started = time.perf_counter()
        service.search(query, k=10)
        times.append((time.perf_counter() - started) * 1000)
    return times


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_environment(settings: Settings, root: Path = ROOT) -> dict[str, str]:
    """Return the environment of ``kbsearch serve`` for one size (rate limits off), serving
    the kbsearch package of the checkout at ``root``."""
    values = {"articles": settings.articles, "index": settings.index,
              "feedback_db": settings.feedback_db, "weights_dir": settings.weights_dir,
              "keys_file": settings.keys_file, "channels_db": settings.channels_db,
              "model": settings.model, "rate_limit": "off", "rate_limit_keyed": "off",
              "rate_limit_callbacks": "off"}
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.update({f"KBSEARCH_{name.upper()}": str(value) for name, value in values.items()})
    return env


def start_server(settings: Settings, folder: Path, fake_seed: int | None,
                 root: Path = ROOT) -> tuple[subprocess.Popen, int]:
    """Start ``kbsearch serve`` with its defaults in a process group of its own (the
    kbsearch of the checkout at ``root``: this one unless comparing two)."""
    port = free_port()
    serve = ["serve", "--port", str(port)]
    if fake_seed is None:
        command = [sys.executable, "-c", "from kbsearch.cli import main; main()", *serve]
    else:
        command = [sys.executable, "-c", SERVE_FAKE, str(SCRIPTS), str(fake_seed), *serve]
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder,
                               env=server_environment(settings, root),
                               start_new_session=True)
    log.close()
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            status, _ = get(port, "/healthz")
            if status == 200:
                return process, port
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(process)
            tail = (folder / "server.log").read_text("utf-8", errors="replace")[-2000:]
            raise BenchError(f"kbsearch serve did not start:\n{tail}")
        time.sleep(0.5)


def stop_server(process: subprocess.Popen) -> None:
    """Stop the server's whole process group: TERM, then KILL."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    except ProcessLookupError:
        process.wait(timeout=30)


def get(port: int, path: str, connection: http.client.HTTPConnection | None = None) -> tuple[
        int, bytes]:
    """Send one GET (over ``connection`` when given, kept alive); return status and body."""
    own = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        own.request("GET", path)
        answer = own.getresponse()
        return answer.status, answer.read()
    finally:
        if connection is None:
            own.close()


def search_path(query: str) -> str:
    """Return the API path of a search for ``query`` (k 10)."""
    return "/api/v1/search?" + urllib.parse.urlencode({"q": query, "k": 10})


def http_latency(port: int, queries: Sequence[str]) -> list[float]:
    """Return the ms of each search sent one after another over one kept-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    for position, query in enumerate([*queries[:5], *queries]):
        started = time.perf_counter()
        status, body = get(port, search_path(query), connection)
        if status != 200:
            raise BenchError(f"search {query!r} answered {status}: {body[:300]!r}")
        if position >= 5:
            times.append((time.perf_counter() - started) * 1000)
    connection.close()
    return times


def saturate(port: int, queries: Sequence[str], seconds: float) -> dict[str, float]:
    """Send searches from 8 threads, each on its own connection, for ``seconds``.

    Returns the answered searches per second and the p50 latency under that load.
    """
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    failures = [0] * CLIENTS
    deadline = time.perf_counter() + seconds

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        position = number * 7
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                status, _ = get(port, search_path(queries[position % len(queries)]),
                                connection)
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
            if status == 200:
                latencies[number].append((time.perf_counter() - started) * 1000)
            else:
                failures[number] += 1
            position += 1
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    done = [t for per_client in latencies for t in per_client]
    return {"qps": round(len(done) / elapsed, 1), "load_failures": sum(failures),
            "load_p50_ms": round(percentile(done, 0.5), 1) if done else 0.0}


def worker_memory(process: subprocess.Popen) -> dict[str, float]:
    """Return the mean resident and proportional set size of gunicorn's workers, in MB."""
    pid = process.pid
    workers = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    rss, pss = [], []
    for worker in workers:
        rollup = Path(f"/proc/{worker}/smaps_rollup").read_text().splitlines()
        fields = {line.split(":")[0]: line.split()[1] for line in rollup if ":" in line}
        rss.append(int(fields["Rss"]) / 1024)
        pss.append(int(fields["Pss"]) / 1024)
    return {"rss_mb_per_worker": round(statistics.mean(rss), 1) if rss else 0.0,
            "pss_mb_per_worker": round(statistics.mean(pss), 1) if pss else 0.0,
            "workers": len(workers)}


def prepare_kb(size: Size, folder: Path, sources: Sources, seed: int,
               sample: Path) -> int:
    """Write the size's knowledge base into ``folder/articles``; return its article count."""
    target = folder / "articles"
    if size.count == 0:
        shutil.copytree(sample, target)
        return len(list(target.rglob("*.md")))
    write_kb(target, size.count, seed, sources)
    return size.count


@contextlib.contextmanager
def size_folder(size: Size, workdir: Path | None) -> Iterator[Path]:
    """Yield the folder of one size: temporary, or ``workdir/<size>`` kept for later runs."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix=f"kbsearch-bench-{size.key}-") as tmp:
            yield Path(tmp)
        return
    folder = workdir / size.key
    folder.mkdir(parents=True, exist_ok=True)
    yield folder


def kept_build_figures(folder: Path, made_with: dict[str, Any]) -> dict[str, Any] | None:
    """Return the build figures of a base kept in ``folder`` by an earlier run, if any.

    Only a base that finished building with the same seed and vectors is reused (its
    figures file is written last); anything else in the folder is written anew.
    """
    path = folder / BUILD_FIGURES
    if not path.exists():
        for leftover in ("articles", "index", "data"):
            shutil.rmtree(folder / leftover, ignore_errors=True)
        return None
    figures = json.loads(path.read_text("utf-8"))
    if figures.pop("made_with", None) != made_with:
        path.unlink()
        return kept_build_figures(folder, made_with)
    return {**figures, "build_reused": True}


def build_figures(size: Size, settings: Settings, embedder: Embedder, seed: int,
                  articles: int, incremental: bool = True) -> dict[str, Any]:
    """Build from scratch, then (``incremental``) after changing 1 and 100 articles;
    return the figures (the reindex times None without)."""
    full = timed_build(settings.articles, settings.index, embedder, settings)
    rate = round(articles / full, 1)
    figures: dict[str, Any] = {
        "articles": articles, "vectors": embedder.name,
        "build_s": round(full, 1),
        "build_docs_per_s": None if size.synthetic else rate,
        "build_without_embedding_docs_per_s": rate if size.synthetic else None,
    }
    for round_, changed in enumerate((1, 100), start=1):
        if not incremental:
            figures[f"incremental_{changed}_s"] = None
            continue
        if size.count == 0:  # the sample: change its first files, in a seeded order
            files = sorted(settings.articles.rglob("*.md"))[:changed]
            for path in files:
                with path.open("a", encoding="utf-8") as handle:
                    handle.write(f"\nÄnderung {round_}: bitte beachten Sie den Hinweis.\n")
        else:
            change_articles(settings.articles, changed, size.count, seed, round_)
        seconds = timed_build(settings.articles, settings.index, embedder, settings)
        figures[f"incremental_{changed}_s"] = round(seconds, 2)
    return figures


def measure_size(size: Size, base: Settings, model: Embedder, floor: Callable[[str], Any],
                 sources: Sources, queries: Sequence[str], args: argparse.Namespace,
                 ) -> dict[str, Any]:
    """Generate, build and measure one knowledge base; return its figures.

    The floor is measured again just before this size's latencies, under the same load.
    """
    fake_seed = args.seed if args.fake_model else None
    with size_folder(size, args.workdir) as folder:
        settings = size_settings(base, folder)
        builder = ClusteredEmbedder(seed=args.seed) if size.synthetic else model
        made_with = {"seed": args.seed, "synthetic": size.synthetic}
        figures = kept_build_figures(folder, made_with)
        if figures is None:
            if not args.ignore_memory:
                check_build_memory(size, available_memory())
            articles = prepare_kb(size, folder, sources, args.seed, base.articles)
            figures = build_figures(size, settings, builder, args.seed, articles,
                                    not args.no_incremental)
            if args.workdir is not None:
                (folder / BUILD_FIGURES).write_text(
                    json.dumps({"made_with": made_with, **figures}), "utf-8")
        build = settings.index / BUILDS / str(current_version(settings.index))
        manifest = json.loads((build / "manifest.json").read_text("utf-8"))
        figures["chunks"] = manifest["chunks"]
        figures["index_mb"] = folder_mb(build)
        if args.build_only:
            return figures
        kind, recall = dense_recall(build, builder.embed_queries(list(queries)))
        figures["dense_index"], figures["recall@10"] = kind, recall
        figures["floor_ms"] = measure_floor(floor, queries[:100])
        figures.update(latency_figures("inproc", inproc_latency(settings, model, queries)))
        process, port = start_server(settings, folder, fake_seed)
        try:
            figures.update(latency_figures("http", http_latency(port, queries)))
            for name in ("http_p50", "http_p99"):  # the targets are multiples of the floor
                figures[f"{name}_x_floor"] = round(
                    figures[f"{name}_ms"] / max(figures["floor_ms"], 0.1), 2)
            figures.update(saturate(port, queries, args.load_seconds))
            figures.update(worker_memory(process))
        finally:
            stop_server(process)
    return figures


def markdown_table(result: dict[str, Any]) -> str:
    """Return the figures as a markdown table, one column per size."""
    sizes = result["sizes"]
    rows = [f"| figure | {' | '.join(sizes)} |", "| --- |" + " ---: |" * len(sizes)]
    names = sorted({name for figures in sizes.values() for name in figures},
                   key=lambda n: (n not in KEYS, KEYS.index(n) if n in KEYS else 0, n))
    for name in names:
        cells = ["-" if sizes[s].get(name) is None else str(sizes[s][name]) for s in sizes]
        rows.append(f"| {name} | {' | '.join(cells)} |")
    return (f"floor (bare query embedding, batch 1, median): {result['floor_ms']} ms; "
            f"model load {result['model_load_s']} s; load average {result['loadavg_start']}"
            f" at the start, {result['loadavg_end']} at the end\n\n"
            + "\n".join(rows))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1k,10k",
                        help="comma-separated: sample, 1k, 10k, 100k, 1M or a number")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--queries", type=int, default=300,
                        help="mixed German and English queries for the latency figures")
    parser.add_argument("--load-seconds", type=float, default=30.0,
                        help="how long the 8 clients send searches")
    parser.add_argument("--synthetic-from", type=int, default=100_000,
                        help="from this many articles, synthetic vectors for the dense part")
    parser.add_argument("--eval-dir", type=Path, default=ROOT.parent / "shared" / "eval",
                        help="the evaluation sets whose text and queries are used")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep each size's knowledge base and index in WORKDIR/<size> "
                             "and reuse them in later runs (no build figures measured then)")
    parser.add_argument("--build-only", action="store_true",
                        help="build (or find) each size's base and stop: with --workdir, "
                             "a large base built at low priority, measured later on an idle "
                             "machine")
    parser.add_argument("--no-incremental", action="store_true",
                        help="measure the full build only, not the reindexes after "
                             "changing 1 and 100 articles")
    parser.add_argument("--ignore-memory", action="store_true",
                        help="build a size even where its estimated peak memory is more "
                             "than the machine has available")
    # test hook: the synthetic embedder stands in for the model everywhere (no torch)
    parser.add_argument("--fake-model", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark for the chosen sizes and print a table or JSON."""
    args = parse_args(argv)
    if args.build_only and args.workdir is None:
        raise BenchError("--build-only keeps nothing without --workdir")
    # TERM unwinds like Ctrl-C: the server's process group is stopped, temporary files go
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    sizes = parse_sizes(args.sizes, args.synthetic_from)
    base = load_settings()
    sources = load_sources(base.articles, args.eval_dir)
    queries = mixed_queries(sources, args.queries, args.seed)
    started = time.perf_counter()
    model: Embedder = ClusteredEmbedder(seed=args.seed) if args.fake_model else \
        default_embedder(base)
    model.embed_queries(["warm-up"])
    model_load_s = round(time.perf_counter() - started, 1)
    floor = floor_encoder(None if args.fake_model else base, args.seed)
    result: dict[str, Any] = {
        "floor_ms": measure_floor(floor, queries[:100]),
        "model_load_s": model_load_s, "seed": args.seed, "queries": len(queries),
        "clients": CLIENTS,
        "load_seconds": args.load_seconds, "cpus": os.cpu_count(),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "sizes": {}}
    for size in sizes:
        print(f"bench: measuring {size.key} ...", file=sys.stderr, flush=True)
        result["sizes"][size.key] = measure_size(size, base, model, floor, sources, queries,
                                                 args)
        print(f"bench: {size.key}: {json.dumps(result['sizes'][size.key])}", file=sys.stderr,
              flush=True)
    result["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    print(json.dumps(result) if args.json else markdown_table(result))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        sys.exit(f"bench: {exc}")
