"""scripts/bench.py and its knowledge-base generator (scripts/bench_kb.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys

import numpy as np
import pytest

from kbsearch.content.articles import load_articles

from .conftest import ARTICLES, ROOT, SHARED_EVAL

DESIGN_KEYS = ("build_docs_per_s", "incremental_1_s", "inproc_p50_ms", "http_p50_ms",
               "http_p99_ms", "qps", "rss_mb_per_worker", "index_mb", "recall@10")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def kb():
    return load_script("bench_kb")


@pytest.fixture(scope="module")
def sources(kb):
    return kb.load_sources(ARTICLES, SHARED_EVAL)


def test_the_generator_is_seeded_and_reproducible(kb, sources, tmp_path):
    kb.write_kb(tmp_path / "a", 30, 7, sources)
    kb.write_kb(tmp_path / "b", 60, 7, sources)
    first = sorted((tmp_path / "a").rglob("*.md"))
    assert len(first) == 30
    for path in first:  # the first 30 of a bigger knowledge base are the same articles
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert path.read_bytes() == twin.read_bytes()
    assert kb.article_text(3, 7, sources) != kb.article_text(3, 8, sources)


def test_generated_articles_are_valid_with_a_realistic_spread(kb, sources, tmp_path):
    kb.write_kb(tmp_path, 300, 1, sources)
    loaded = load_articles(tmp_path)
    assert loaded.errors == ()
    assert len(loaded.articles) == 300
    assert {a.language for a in loaded.articles} == {"de", "en"}
    lengths = [len(a.body.split()) for a in loaded.articles]
    deciles = statistics.quantiles(lengths, n=10)
    assert deciles[0] < 150 and deciles[-1] > 500  # short FAQ answers and long guides
    assert 150 < statistics.median(lengths) < 400
    assert any("\n## " in a.body for a in loaded.articles)


def test_changing_articles_changes_that_many_files(kb, sources, tmp_path):
    kb.write_kb(tmp_path, 40, 1, sources)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.md")}
    kb.change_articles(tmp_path, 5, 40, 1, 1)
    changed = [p for p, text in before.items() if p.read_bytes() != text]
    assert len(changed) == 5
    assert load_articles(tmp_path).errors == ()


def test_clustered_vectors_are_seeded_normalised_and_clustered(kb):
    embedder = kb.ClusteredEmbedder(dimension=32, clusters=4, seed=3)
    texts = [f"text {i}" for i in range(200)]
    vectors = embedder.embed_passages(texts)
    assert vectors.shape == (200, 32) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, kb.ClusteredEmbedder(dimension=32, clusters=4,
                                                        seed=3).embed_passages(texts))
    nearest = (vectors @ embedder.centres.T).max(axis=1)
    assert nearest.min() > 0.7  # every vector lies close to one of the 4 centres


def test_mixed_queries_are_half_german_half_english(kb, sources):
    if not sources.queries:
        pytest.skip("no evaluation sets in ../shared/eval")
    queries = kb.mixed_queries(sources, 40, 2)
    german = {q for lang, q in sources.queries if lang == "de"}
    assert len(queries) == 40
    assert sum(q in german for q in queries) == 20
    assert queries == kb.mixed_queries(sources, 40, 2)


def test_sizes_are_parsed_with_the_synthetic_threshold():
    bench = load_script("bench")
    sizes = bench.parse_sizes("sample,1k,100k,1M,250", 100_000)
    assert [(s.key, s.count, s.synthetic) for s in sizes] == [
        ("sample", 0, False), ("1000", 1000, False), ("100000", 100_000, True),
        ("1000000", 1_000_000, True), ("250", 250, False)]
    assert bench.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert bench.percentile(list(range(1, 101)), 0.99) == 99


def test_a_size_too_large_for_the_memory_is_refused_before_anything_is_built():
    bench = load_script("bench")
    million, ten_k, sample = bench.parse_sizes("1M,10k,sample", 100_000)
    gb = 1_000_000_000
    assert bench.build_memory_needed(1_000_000) > 19.2 * gb  # a 1M build peaked at 19.2 GB
    assert bench.build_memory_needed(100_000) < 4 * gb
    with pytest.raises(bench.BenchError, match=r"1000000 articles needs about 20 GB .* "
                                               r"16\.0 GB are available.*--ignore-memory"):
        bench.check_build_memory(million, 16 * gb)
    bench.check_build_memory(million, 24 * gb)  # enough: no error
    bench.check_build_memory(ten_k, 4 * gb)
    bench.check_build_memory(sample, 0)  # the bundled knowledge base is always built
    assert bench.available_memory() > 0


@pytest.mark.slow
def test_the_script_prints_the_documented_json(tmp_path):
    if not (SHARED_EVAL / "stackfaq_en").exists():
        pytest.skip("no evaluation sets in ../shared/eval")
    def bench(*extra: str) -> dict:
        run = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "bench.py"), "--sizes", "40",
             "--fake-model", "--queries", "20", "--load-seconds", "2", "--json", *extra],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT), "KBSEARCH_HOME": str(ROOT)})
        assert run.returncode == 0, run.stderr[-3000:]
        return json.loads(run.stdout)

    result = bench("--workdir", str(tmp_path / "kept"))
    assert (tmp_path / "kept" / "40" / "index").is_dir()  # kept for later runs
    again = bench("--workdir", str(tmp_path / "kept"))["sizes"]["40"]
    assert again["build_reused"] is True and "build_reused" not in result["sizes"]["40"]
    assert again["build_s"] == result["sizes"]["40"]["build_s"]  # the first run's figures
    assert again["http_p50_ms"] > 0 and again["chunks"] == result["sizes"]["40"]["chunks"]
    reseeded = bench("--workdir", str(tmp_path / "kept"), "--seed", "2")["sizes"]["40"]
    assert "build_reused" not in reseeded  # another seed: generated and built anew
    assert result["floor_ms"] >= 0
    figures = result["sizes"]["40"]
    for key in DESIGN_KEYS:
        assert isinstance(figures[key], float), key
    assert figures["articles"] == 40 and figures["recall@10"] == 1.0
    assert figures["qps"] > 0 and figures["load_failures"] == 0
    assert figures["workers"] == 1
    only = bench("--workdir", str(tmp_path / "later"), "--build-only")["sizes"]["40"]
    assert only["build_s"] > 0 and "http_p50_ms" not in only  # built, nothing served
    assert bench("--workdir", str(tmp_path / "later"))["sizes"]["40"]["build_reused"] is True
