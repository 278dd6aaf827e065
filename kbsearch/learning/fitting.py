"""Fitting ranking weights (listwise) and their calibration (logistic) from judged queries."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kbsearch.ranking.scoring import (
    FEATURES,
    PRIOR_COEFFICIENTS,
    Calibration,
    Candidates,
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
    """The feature matrix of one query's candidates and the gain of each (1/0 if judged)."""

    matrix: np.ndarray
    relevant: np.ndarray
    weight: float = 1.0


def judged_query(
    candidates: Candidates, relevant_ids: frozenset[str], weight: float = 1.0
) -> JudgedQuery:
    """Build a JudgedQuery from retrieval candidates and the ids judged relevant."""
    return JudgedQuery(
        feature_matrix(candidates),
        np.array([i in relevant_ids for i in candidates.ids], dtype=float),
        weight,
    )


def prior_weights(features: Sequence[str] = FEATURES) -> RankingWeights:
    """Return the starting weights: PRIOR_COEFFICIENTS for feedback features, 0 elsewhere."""
    return RankingWeights(
        tuple(features), tuple(PRIOR_COEFFICIENTS.get(f, 0.0) for f in features), 0.0
    )


def fit_listwise(
    queries: Sequence[JudgedQuery],
    features: Sequence[str] = FEATURES,
    l2: float = 1e-3,
    prior: RankingWeights | None = None,
    keep_prior: frozenset[str] = frozenset(),
) -> RankingWeights:
    """Fit linear ranking weights with the ListNet top-one softmax loss (Cao et al. 2007).

    Per query: loss = cross-entropy between the target distribution (each candidate's gain
    over the query's total gain; binary relevance gives 1 / number relevant) and the
    softmax of the scores, weighted by the query's weight (normalised to sum 1), plus
    ``l2`` times the squared distance to the ``prior`` weights on standardised features.
    Features that do not vary in the data, and those in ``keep_prior``, keep the prior's
    coefficient; the prior defaults to :func:`prior_weights`. Queries without gain carry no
    ranking signal and are left out.
    """
    from scipy.optimize import minimize

    prior = prior or prior_weights(features)
    start = dict(zip(prior.features, prior.coefficients, strict=True))
    used = [q for q in queries if q.relevant.sum() > 0 and len(q.relevant) > 1 and q.weight > 0]
    if not used:
        raise ValueError("no query has a relevant candidate to learn from")
    x = np.vstack([select(q.matrix, features) for q in used])
    gain = np.concatenate([q.relevant for q in used]).astype(np.float64)
    sizes = np.array([len(q.relevant) for q in used])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    owner = np.repeat(np.arange(len(used)), sizes)
    query_weight = np.array([q.weight for q in used]) / sum(q.weight for q in used)
    target = gain / np.add.reduceat(gain, starts)[owner]
    mean, std = x.mean(axis=0), x.std(axis=0)
    varies = (std > 1e-9) & np.array([f not in keep_prior for f in features])
    fixed = np.array([start.get(f, 0.0) for f in features])
    fixed_score = x[:, ~varies] @ fixed[~varies]
    std, mean = std[varies], mean[varies]
    xs = (x[:, varies] - mean) / std
    w0 = fixed[varies] * std

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = xs @ w + fixed_score
        top = np.maximum.reduceat(s, starts)
        e = np.exp(s - top[owner])
        z = np.add.reduceat(e, starts)
        p = e / z[owner]
        per_query = top + np.log(z) - np.add.reduceat(target * s, starts)
        grad_rows = query_weight[owner] * (p - target)
        return (
            float(query_weight @ per_query + l2 * (w - w0) @ (w - w0)),
            xs.T @ grad_rows + 2 * l2 * (w - w0),
        )

    result = minimize(loss, w0, jac=True, method="L-BFGS-B")
    coefficients = fixed.copy()
    coefficients[varies] = result.x / std
    return RankingWeights(
        features=tuple(features),
        coefficients=tuple(round(float(c), 6) for c in coefficients),
        intercept=round(float(-(coefficients[varies] @ mean)), 6),
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
    rows, labels, sample_weight = [], [], []
    dense = FEATURES.index("dense")
    for q in queries:
        s = scores(q.matrix, weights)
        best = np.argsort(-s, kind="stable")[:top]
        for i in best:
            rows.append([s[i], s[i] - s.max(), q.matrix[:, dense].max()])
            labels.append(q.relevant[i] > 0)
            sample_weight.append(q.weight)
    return fit_platt(rows, labels, sample_weight)


def fit_platt(
    rows: Sequence[Sequence[float]] | np.ndarray, labels: Sequence[int | bool] | np.ndarray,
    sample_weight: Sequence[float] | np.ndarray,
) -> Calibration:
    """Fit a Calibration by weighted logistic regression on (score, gap, best dense) rows.

    A negative score slope is folded into the gap term, so the probability always grows
    with the score within a query.
    """
    from sklearn.linear_model import LogisticRegression

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
    ranks exactly as the retriever does. The feedback and metadata features
    (PRIOR_COEFFICIENTS) keep their prior coefficients: a judged set says nothing about
    them (a knowledge base's editor questions fitted once gave learned questions nearly
    twice the weight, and overdue articles a bonus), feedback training moves them.
    """
    scorer: RankingWeights | TreeEnsemble
    if len(features) == 1:
        scorer = RankingWeights(tuple(features), (1.0,), 0.0)
    elif kind == "trees":
        scorer = fit_trees(queries, features)
    elif kind == "linear":
        scorer = fit_listwise(queries, features, l2, keep_prior=frozenset(PRIOR_COEFFICIENTS))
    else:
        raise ValueError(f"unknown model kind {kind!r}; use trees or linear")
    return ModeModel(scorer, fit_calibration(queries, scorer))


def estimate_propensities(
    positions: np.ndarray,
    clicks: np.ndarray,
    features: np.ndarray,
    iterations: int = 100,
    tolerance: float = 1e-3,
    max_rows: int = 50_000,
    seed: int = 0,
) -> np.ndarray:
    """Estimate the examination probability of each position from click logs (regression EM).

    The position-based click model says P(click) = P(examined | position) * P(relevant | x).
    Regression EM (Wang et al., "Position bias estimation for unbiased learning to rank in
    personal search", WSDM 2018) alternates between the posterior of (examined, relevant)
    for each shown result and refitting both factors: the examination per position as a
    mean, the relevance as a logistic regression on the features, which is what lets the
    two be told apart without randomising the ranking. Iterates until the relative
    propensities change by less than ``tolerance``. ``positions`` are 1-based; returns
    the propensity of positions 1..max(positions), relative to position 1 (so [0] is 1).
    At most ``max_rows`` shown results (a seeded random sample) take part.
    """
    from sklearn.linear_model import LogisticRegression

    positions = np.asarray(positions, dtype=np.int64)
    clicks = np.asarray(clicks, dtype=np.float64)
    if len(positions) > max_rows:
        keep = np.random.default_rng(seed).choice(len(positions), max_rows, replace=False)
        positions, clicks, features = positions[keep], clicks[keep], features[keep]
    depth = int(positions.max())
    theta = np.full(depth, 0.5)
    gamma = np.full(len(positions), max(1e-3, min(0.5, float(clicks.mean()) * 2)))
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-9
    x = np.vstack([(features - mean) / std] * 2)
    y = np.concatenate([np.ones(len(clicks)), np.zeros(len(clicks))])
    model = LogisticRegression(C=1.0, max_iter=200, warm_start=True)
    for _ in range(iterations):
        t = theta[positions - 1]
        denominator = np.maximum(1.0 - t * gamma, 1e-12)
        examined = clicks + (1 - clicks) * t * (1 - gamma) / denominator
        relevant = clicks + (1 - clicks) * (1 - t) * gamma / denominator
        previous = theta
        theta = np.clip(
            np.bincount(positions - 1, weights=examined, minlength=depth)
            / np.maximum(np.bincount(positions - 1, minlength=depth), 1),
            1e-3, 1.0,
        )
        if np.abs(theta / theta[0] - previous / previous[0]).max() < tolerance:
            break
        weights = np.concatenate([relevant, 1 - relevant])
        model.fit(x, y, sample_weight=np.maximum(weights, 1e-9))
        gamma = model.predict_proba(x[: len(clicks)])[:, 1]
    theta = np.minimum.accumulate(theta)  # examination never rises further down the list
    return theta / theta[0]


def query_folds(query_ids: Sequence[str], folds: int) -> list[int]:
    """Assign each query to one of ``folds`` folds by a hash of its id (reproducible)."""
    return [
        int.from_bytes(hashlib.sha1(q.encode("utf-8")).digest()[:4], "big") % folds
        for q in query_ids
    ]
