"""The dense index: FAISS inner product over L2-normalised chunk vectors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 256


@dataclass(frozen=True)
class DenseHits:
    """Chunk rows and their cosine similarities, best first."""

    rows: np.ndarray
    scores: np.ndarray


def build_faiss(vectors: np.ndarray, exact_limit: int) -> faiss.Index:
    """Return an exact flat index, or HNSW when there are more than ``exact_limit`` rows."""
    dim = vectors.shape[1]
    if len(vectors) <= exact_limit:
        index: faiss.Index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def index_kind(index: faiss.Index) -> str:
    """Name the FAISS index type for the manifest."""
    return "hnsw" if isinstance(index, faiss.IndexHNSWFlat) else "flat"


def save_faiss(index: faiss.Index, path: Path) -> None:
    """Write a FAISS index file."""
    faiss.write_index(index, str(path))


def load_faiss(path: Path) -> faiss.Index:
    """Read a FAISS index file (memory-mapped where FAISS allows it)."""
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)


def search(
    index: faiss.Index, query: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> DenseHits:
    """Return the top-k chunk rows for one query vector, optionally only ``allowed`` rows."""
    if index.ntotal == 0 or k <= 0:
        return DenseHits(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    params = None
    if allowed is not None:
        if len(allowed) == 0:
            return DenseHits(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        if isinstance(index, faiss.IndexHNSWFlat):
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, k))
        else:
            params = faiss.SearchParameters(sel=selector)
    elif isinstance(index, faiss.IndexHNSWFlat):
        params = faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, k))
    scores, rows = index.search(query, min(k, index.ntotal), params=params)
    keep = rows[0] >= 0
    return DenseHits(rows[0][keep].astype(np.int64), scores[0][keep])
