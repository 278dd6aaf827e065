"""The dense index: exact search through the chunk vectors, FAISS IVF above the limit."""

from __future__ import annotations

import numpy as np
import pytest

from kbsearch.index import dense


@pytest.fixture
def vectors() -> np.ndarray:
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(500, 16)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray) -> list[int]:
    scores = vectors @ query
    order = [int(r) for r in np.argsort(-scores, kind="stable") if allowed[r]]
    return order[:k]


def test_exact_search_is_the_brute_force_order_with_its_scores(vectors):
    query = vectors[3] + 0.1 * vectors[9]
    everything = np.ones(len(vectors), dtype=bool)
    found = dense.search(None, vectors, query, 20)
    assert found.rows.tolist() == brute_force(vectors, query, 20, everything)
    assert found.rows[0] == 3
    np.testing.assert_allclose(found.scores, vectors[found.rows] @ query, rtol=1e-6)
    assert np.all(np.diff(found.scores) <= 0)


def test_exact_search_keeps_only_allowed_rows(vectors):
    allowed = np.zeros(len(vectors), dtype=bool)
    allowed[::7] = True
    query = vectors[3]  # not allowed: 3 is no multiple of 7
    found = dense.exact_search(vectors, query, 10, allowed)
    assert found.rows.tolist() == brute_force(vectors, query, 10, allowed)
    assert 3 not in found.rows.tolist() and np.isfinite(found.scores).all()


def test_exact_search_asks_for_more_rows_than_are_allowed(vectors):
    allowed = np.zeros(len(vectors), dtype=bool)
    allowed[[5, 50]] = True
    assert sorted(dense.exact_search(vectors, vectors[0], 10, allowed).rows.tolist()) == [5, 50]
    assert len(dense.exact_search(vectors, vectors[0], 10, ~np.ones(500, bool)).rows) == 0
    assert len(dense.exact_search(vectors[:0], vectors[0], 10).rows) == 0


def test_ivf_search_finds_the_exact_neighbours_and_respects_the_mask(vectors, tmp_path):
    described = dense.write_dense(tmp_path, vectors, exact_limit=10)
    assert described == {"kind": "ivf", "lists": dense.list_count(500), "centroids": "trained",
                         "nprobe": dense.nprobe_for(dense.list_count(500))}
    index = dense.load_faiss(tmp_path / dense.DENSE_FILE)
    lists = np.load(tmp_path / dense.LISTS_FILE)
    centroids = np.load(tmp_path / dense.CENTROIDS_FILE)
    assert lists.tolist() == np.argmax(vectors @ centroids.T, axis=1).tolist()
    allowed = np.arange(len(vectors)) % 2 == 0
    for row in (0, 10, 400):
        query = vectors[row] + 0.05 * vectors[row + 1]
        found = dense.search(index, vectors, query, 10, allowed)
        assert set(found.rows.tolist()) <= set(np.nonzero(allowed)[0].tolist())
        wanted = brute_force(vectors, query, 10, allowed)
        assert len(set(found.rows.tolist()) & set(wanted)) >= 9
        np.testing.assert_allclose(found.scores, vectors[found.rows] @ query, rtol=1e-5)
    assert len(dense.search(index, vectors, vectors[0], 10, np.zeros(500, bool)).rows) == 0


def test_kept_centroids_assign_only_the_new_rows(vectors, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    dense.write_dense(first, vectors, exact_limit=10)
    centroids = np.load(first / dense.CENTROIDS_FILE)
    kept = np.load(first / dense.LISTS_FILE)
    kept[::5] = 7  # not where these rows belong: kept rows keep their list as it is
    kept[::3] = -1  # new rows
    described = dense.write_dense(second, vectors, 10, centroids, kept)
    assert described["centroids"] == "kept"
    lists = np.load(second / dense.LISTS_FILE)
    nearest = np.argmax(vectors @ centroids.T, axis=1)
    assert lists[::3].tolist() == nearest[::3].tolist()
    assert lists[5::15].tolist() == [7] * len(lists[5::15])
    index = dense.load_faiss(second / dense.DENSE_FILE)
    assert index.ntotal == len(vectors)
    grown = np.concatenate([vectors] * 5)  # five times the rows: about twice the lists
    described = dense.write_dense(second, grown, 10, centroids, np.zeros(len(grown), int))
    assert described["centroids"] == "trained" and described["lists"] > len(centroids) * 2 - 5


def test_nothing_is_written_up_to_the_exact_limit(vectors, tmp_path):
    assert dense.write_dense(tmp_path, vectors, exact_limit=500) == {"kind": "flat"}
    assert list(tmp_path.iterdir()) == []


def test_numpy_blas_threads_sleep_after_a_product_once_kbsearch_is_imported():
    """Importing kbsearch first lets OpenBLAS's workers sleep instead of spinning ~0.1 s."""
    import subprocess
    import sys

    script = (
        "import os, time, kbsearch, numpy as np\n"
        "a = np.random.default_rng(0).random((1500, 1500))\n"
        "for _ in range(3): a @ a\n"
        "started = time.process_time(); time.sleep(0.5)\n"
        "print(os.environ['OPENBLAS_THREAD_TIMEOUT'], time.process_time() - started)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    assert out[0] == "4"
    assert float(out[1]) < 0.03  # the default spin costs about 0.1 s of CPU here
