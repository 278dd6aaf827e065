"""Fitting ranking weights (listwise) and their calibration (logistic) from judged queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kbsearch.ranking import (
    FEATURES,
    Calibration,
    ModeModel,
    RankingWeights,
    Tree,
    TreeEnsemble,
    feature_matrix,
    scores,
    select,
)

TREE_PARAMS = {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15}


@dataclass(frozen=True)
class JudgedQuery:
    """The feature matrix of one query's candidates and which of them are relevant."""

    matrix: np.ndarray
    relevant: np.ndarray
    weight: float = 1.0


def judged_query(candidates, relevant_ids: frozenset[str], weight: float = 1.0) -> JudgedQuery:
    """Build a JudgedQuery from retrieval candidates and the ids judged relevant."""
    return JudgedQuery(
        feature_matrix(candidates),
        np.array([i in relevant_ids for i in candidates.ids], dtype=float),
        weight,
    )


def fit_listwise(
    queries: Sequence[JudgedQuery], features: Sequence[str] = FEATURES, l2: float = 1e-3
) -> RankingWeights:
    """Fit linear ranking weights with the ListNet top-one softmax loss (Cao et al. 2007).

    Per query: loss = logsumexp(s) - mean of s over the relevant candidates, weighted by the
    query's weight, plus ``l2`` times the squared weights (on standardised features).
    Queries without a relevant candidate carry no ranking signal and are left out.
    """
    from scipy.optimize import minimize

    used = [q for q in queries if q.relevant.any() and len(q.relevant) > 1]
    if not used:
        raise ValueError("no query has a relevant candidate to learn from")
    x = np.vstack([select(q.matrix, features) for q in used])
    y = np.concatenate([q.relevant for q in used])
    sizes = np.array([len(q.relevant) for q in used])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    owner = np.repeat(np.arange(len(used)), sizes)
    query_weight = np.array([q.weight for q in used]) / sum(q.weight for q in used)
    n_relevant = np.array([q.relevant.sum() for q in used])
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    xs = (x - mean) / std

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = xs @ w
        top = np.maximum.reduceat(s, starts)
        e = np.exp(s - top[owner])
        z = np.add.reduceat(e, starts)
        p = e / z[owner]
        per_query = top + np.log(z) - np.add.reduceat(y * s, starts) / n_relevant
        grad_rows = query_weight[owner] * (p - y / n_relevant[owner])
        return (
            float(query_weight @ per_query + l2 * w @ w),
            xs.T @ grad_rows + 2 * l2 * w,
        )

    result = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B")
    coefficients = result.x / std
    return RankingWeights(
        features=tuple(features),
        coefficients=tuple(round(float(c), 6) for c in coefficients),
        intercept=round(float(-(coefficients @ mean)), 6),
    )


def fit_trees(
    queries: Sequence[JudgedQuery],
    features: Sequence[str] = FEATURES,
    params: dict[str, float] | None = None,
    seed: int = 0,
) -> TreeEnsemble:
    """Fit gradient-boosted trees on P(relevant | features) (scikit-learn's histogram GBM).

    Each query weighs the same whatever its number of candidates' relevant answers: its
    rows carry ``weight / number of relevant candidates``. The trees are exported to plain
    node arrays, so scoring needs neither scikit-learn nor pickle.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = np.vstack([select(q.matrix, features) for q in queries])
    y = np.concatenate([q.relevant for q in queries]).astype(int)
    w = np.concatenate(
        [np.full(len(q.relevant), q.weight / max(1.0, float(q.relevant.sum()))) for q in queries]
    )
    model = HistGradientBoostingClassifier(
        **{**TREE_PARAMS, **(params or {})}, early_stopping=False, random_state=seed
    )
    model.fit(x, y, sample_weight=w)
    trees = []
    for (predictor,) in model._predictors:  # one tree per boosting round (binary loss)
        nodes = predictor.nodes
        trees.append(
            Tree(
                feature=tuple(int(v) for v in nodes["feature_idx"]),
                threshold=tuple(float(v) for v in nodes["num_threshold"]),
                left=tuple(int(v) for v in nodes["left"]),
                right=tuple(int(v) for v in nodes["right"]),
                value=tuple(round(float(v), 8) for v in nodes["value"]),
                leaf=tuple(bool(v) for v in nodes["is_leaf"]),
            )
        )
    baseline = float(np.ravel(model._baseline_prediction)[0])
    return TreeEnsemble(tuple(features), round(baseline, 8), tuple(trees))


def fit_calibration(
    queries: Sequence[JudgedQuery], weights: RankingWeights | TreeEnsemble, top: int = 20
) -> Calibration:
    """Fit the logistic map from score to probability on each query's top candidates.

    Only the ``top`` best-scored candidates of a query are used: they are the ones shown,
    so that is where the probability has to be right.
    """
    from sklearn.linear_model import LogisticRegression

    rows, labels, sample_weight = [], [], []
    dense = FEATURES.index("dense")
    for q in queries:
        s = scores(q.matrix, weights)
        best = np.argsort(-s, kind="stable")[:top]
        for i in best:
            rows.append([s[i], s[i] - s.max(), q.matrix[:, dense].max()])
            labels.append(q.relevant[i])
            sample_weight.append(q.weight)
    model = LogisticRegression(C=10.0, max_iter=1000)
    model.fit(np.array(rows), np.array(labels, dtype=int), sample_weight=np.array(sample_weight))
    slope, gap, top_dense = (float(v) for v in model.coef_[0])
    if slope < 0:  # keep p monotone in the score: fold a negative slope into the gap term
        gap, slope = gap + slope, 0.0
    if slope + gap <= 0:
        gap = 1e-6 - slope
    return Calibration(
        slope=round(slope, 6), gap=round(gap, 6), top_dense=round(top_dense, 6),
        intercept=round(float(model.intercept_[0]), 6),
    )


def fit_mode(
    queries: Sequence[JudgedQuery],
    features: Sequence[str],
    l2: float = 1e-3,
    kind: str = "linear",
) -> ModeModel:
    """Fit one mode: a scorer over ``features`` (trees or listwise linear), then calibration.

    A single-feature mode (one retriever alone) keeps weight 1 on that feature, so it
    ranks exactly as the retriever does.
    """
    scorer: RankingWeights | TreeEnsemble
    if len(features) == 1:
        scorer = RankingWeights(tuple(features), (1.0,), 0.0)
    elif kind == "trees":
        scorer = fit_trees(queries, features)
    elif kind == "linear":
        scorer = fit_listwise(queries, features, l2)
    else:
        raise ValueError(f"unknown model kind {kind!r}; use trees or linear")
    return ModeModel(scorer, fit_calibration(queries, scorer))
