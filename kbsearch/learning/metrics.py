"""Search quality metrics: nDCG, MRR, recall and the expected calibration error (pure)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

ECE_BINS = 10


def ndcg_at(ranking: Sequence[str], relevant: Mapping[str, int] | frozenset[str], k: int) -> float:
    """Return nDCG@k with binary gains (Järvelin & Kekäläinen 2002)."""
    dcg = sum(1.0 / math.log2(i + 2) for i, doc in enumerate(ranking[:k]) if doc in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def mrr_at(ranking: Sequence[str], relevant: Mapping[str, int] | frozenset[str], k: int) -> float:
    """Return the reciprocal rank of the first relevant document within the top k."""
    for i, doc in enumerate(ranking[:k]):
        if doc in relevant:
            return 1.0 / (i + 1)
    return 0.0


def recall_at(
    ranking: Sequence[str], relevant: Mapping[str, int] | frozenset[str], k: int
) -> float:
    """Return the share of relevant documents found in the top k."""
    return len(set(ranking[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


def expected_calibration_error(
    probabilities: Sequence[float], outcomes: Sequence[bool], bins: int = ECE_BINS
) -> float:
    """Return ECE over equal-width probability bins (Naeini et al., AAAI 2015)."""
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(outcomes, dtype=float)
    if len(p) == 0:
        return 0.0
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() / len(p) * abs(p[members].mean() - y[members].mean())
    return float(total)


def reliability(
    probabilities: Sequence[float], outcomes: Sequence[bool], bins: int = ECE_BINS
) -> list[tuple[float, float, int]]:
    """Return (mean probability, observed rate, count) per non-empty bin."""
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(outcomes, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    return [
        (float(p[which == b].mean()), float(y[which == b].mean()), int((which == b).sum()))
        for b in range(bins)
        if (which == b).any()
    ]
