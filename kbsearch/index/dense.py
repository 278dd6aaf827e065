"""The dense index: inner product over L2-normalised chunk vectors.

Up to the exact limit a search scans the build's chunk vectors with one BLAS
matrix-vector product, and a build writes no FAISS file: FAISS's flat index scans a single
query on one thread, numpy's BLAS on every core, which halves the scan at 10k articles
(9 ms to 4.5 ms, 32k chunks, 2 cores), and its file was a second copy of the vectors.

Above the limit the index is FAISS's IVF (inverted lists): each chunk belongs to the list
of its nearest centroid, and a search scans the lists of the centroids nearest the query.
The centroids (spherical k-means over a sample) and every chunk's list are kept in the
build, so the next build assigns only its new chunks and fills the lists again from the
kept assignments (a copy, no clustering): a reindex stays cheap at 100k articles and
more, where the HNSW graph this replaced had to be built anew every time (41 s for 32,000
chunks here). The centroids are trained again when the knowledge base has grown or shrunk
so much that their number is off by more than half.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

DENSE_FILE = "dense.faiss"  # in a build, above the exact limit only
CENTROIDS_FILE = "dense_centroids.npy"
LISTS_FILE = "dense_lists.npy"
LISTS_PER_ROOT = 4  # lists: about 4 × the square root of the chunks
TRAIN_PER_LIST = 64  # k-means sample: this many chunks per list
NPROBE_SHARE = 16  # lists scanned: 1/16 of them, and at least MIN_NPROBE
MIN_NPROBE = 32
BATCH = 65_536  # rows assigned or added at a time
HNSW_EF_SEARCH = 256  # builds made before IVF


@dataclass(frozen=True)
class DenseHits:
    """Chunk rows and their cosine similarities, best first."""

    rows: np.ndarray
    scores: np.ndarray


def list_count(rows: int) -> int:
    """Return the number of IVF lists for an index of ``rows`` chunks."""
    return max(1, min(rows, 65_536, round(LISTS_PER_ROOT * math.sqrt(rows))))


def nprobe_for(lists: int) -> int:
    """Return how many lists a search scans."""
    return min(lists, max(MIN_NPROBE, lists // NPROBE_SHARE))


def train_centroids(vectors: np.ndarray, lists: int, seed: int = 1) -> np.ndarray:
    """Return ``lists`` centroids by spherical k-means over a seeded sample of the rows."""
    rng = np.random.default_rng(seed)
    size = min(len(vectors), lists * TRAIN_PER_LIST)
    rows = np.sort(rng.choice(len(vectors), size, replace=False))
    sample = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    kmeans = faiss.Kmeans(vectors.shape[1], lists, niter=10, seed=seed, spherical=True,
                          max_points_per_centroid=TRAIN_PER_LIST)
    kmeans.train(sample)
    return np.asarray(kmeans.centroids, dtype=np.float32)


def _quantizer(centroids: np.ndarray) -> faiss.IndexFlatIP:
    """Return the exact index of the centroids that picks a vector's list."""
    quantizer = faiss.IndexFlatIP(centroids.shape[1])
    quantizer.add(centroids)
    return quantizer


def assign(centroids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Return each row's list: the position of its nearest centroid (inner product)."""
    quantizer = _quantizer(centroids)
    out = np.zeros(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), BATCH):
        batch = np.ascontiguousarray(vectors[start:start + BATCH], dtype=np.float32)
        out[start:start + len(batch)] = quantizer.search(batch, 1)[1][:, 0]
    return out


def build_ivf(vectors: np.ndarray, centroids: np.ndarray, lists: np.ndarray) -> faiss.Index:
    """Return the IVF index of the rows in the given lists (ids: row numbers)."""
    dim = centroids.shape[1]
    index = faiss.IndexIVFFlat(_quantizer(centroids), dim, len(centroids),
                               faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True  # the quantizer holds the centroids
    for start in range(0, len(vectors), BATCH):
        batch = np.ascontiguousarray(vectors[start:start + BATCH], dtype=np.float32)
        ids = np.arange(start, start + len(batch), dtype=np.int64)
        keys = np.ascontiguousarray(lists[start:start + len(batch)], dtype=np.int64)
        index.add_core(len(batch), faiss.swig_ptr(batch), faiss.swig_ptr(ids),
                       faiss.swig_ptr(keys))
    return index


def write_dense(
    folder: Path, vectors: np.ndarray, exact_limit: int,
    centroids: np.ndarray | None = None, lists: np.ndarray | None = None,
) -> dict[str, object]:
    """Write a build's dense index files; return the manifest's description of the index.

    Up to ``exact_limit`` rows nothing is written (the vectors are searched as they are).
    Above it, the IVF index: with the current build's ``centroids`` when their number
    suits the rows, ``lists`` giving each row's list where it comes from that build (-1
    for new rows, which are assigned now); otherwise centroids are trained and every row
    assigned.
    """
    if len(vectors) <= exact_limit:
        return {"kind": "flat"}
    wanted = list_count(len(vectors))
    if centroids is None or lists is None or not wanted / 2 <= len(centroids) <= wanted * 2:
        centroids = train_centroids(vectors, wanted)
        lists = assign(centroids, vectors)
        trained = True
    else:
        lists = lists.copy()
        new = np.flatnonzero(lists < 0)
        lists[new] = assign(centroids, vectors[new])
        trained = False
    np.save(folder / CENTROIDS_FILE, centroids)
    np.save(folder / LISTS_FILE, lists)
    save_faiss(build_ivf(vectors, centroids, lists), folder / DENSE_FILE)
    return {"kind": "ivf", "lists": len(centroids), "nprobe": nprobe_for(len(centroids)),
            "centroids": "trained" if trained else "kept"}


def save_faiss(index: faiss.Index, path: Path) -> None:
    """Write a FAISS index file."""
    faiss.write_index(index, str(path))


def load_faiss(path: Path) -> faiss.Index:
    """Read a FAISS index file (memory-mapped where FAISS allows it)."""
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)


def _empty() -> DenseHits:
    return DenseHits(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))


def exact_search(
    vectors: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> DenseHits:
    """Return the top-k rows of ``vectors`` by inner product, only rows where ``allowed``."""
    if len(vectors) == 0 or k <= 0:
        return _empty()
    scores = np.asarray(vectors) @ np.asarray(query, dtype=np.float32).reshape(-1)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf).astype(np.float32)
        k = min(k, int(np.count_nonzero(allowed)))
        if k == 0:
            return _empty()
    k = min(k, len(scores))
    top = np.argpartition(scores, len(scores) - k)[len(scores) - k:]
    top = top[np.argsort(-scores[top], kind="stable")]
    return DenseHits(top.astype(np.int64), scores[top])


def search(
    index: faiss.Index | None,
    vectors: np.ndarray,
    query: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
) -> DenseHits:
    """Return the top-k chunk rows for one query vector, only rows where ``allowed`` (a mask).

    ``vectors`` are the chunk vectors the index was built from: without a FAISS index
    (None, or a flat one) they are searched exactly (:func:`exact_search`); an IVF index
    scans its nearest lists, an HNSW one (older builds) its graph.
    """
    if index is None or isinstance(index, faiss.IndexFlat):
        return exact_search(vectors, query, k, allowed)
    if index.ntotal == 0 or k <= 0:
        return _empty()
    query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    selector = None
    if allowed is not None:
        if not allowed.any():
            return _empty()
        bits = np.packbits(np.asarray(allowed, dtype=bool), bitorder="little")
        selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
    if isinstance(index, faiss.IndexIVF):
        params: faiss.SearchParameters = faiss.SearchParametersIVF(
            sel=selector, nprobe=nprobe_for(index.nlist))
    else:
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, k))
    scores, rows = index.search(query, min(k, index.ntotal), params=params)
    keep = rows[0] >= 0
    return DenseHits(rows[0][keep].astype(np.int64), scores[0][keep])
