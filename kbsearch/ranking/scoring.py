"""Hybrid ranking: features per candidate article, a logistic model, a probability per hit.

Everything here is pure: plain arrays in, arrays and ``Hit``s out; no Flask, no disk, no model.

Ranking is a linear score over features that describe how well an article matches, its
weights learnt with a listwise softmax loss (ListNet, Cao et al., ICML 2007). The
probability that the article solves the query is a logistic function of that score and of
the query's best match (Platt scaling, Platt 1999), so it is monotone in the score within a
query. Features are scale-free (similarities, per-query normalised BM25, reciprocal ranks,
gaps to the best candidate), so one set of weights carries across knowledge bases.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from kbsearch.errors import ConfigError

FEATURES: tuple[str, ...] = (
    "dense",        # best chunk cosine of query and article
    "dense_gap",    # dense minus the best dense among the candidates (<= 0)
    "dense_z",      # dense standardised over the candidates
    "title_sim",    # cosine of query and title (title embedded as a passage)
    "title_gap",    # title_sim minus the best title_sim among the candidates
    "bm25",         # BM25F over all fields / best BM25F of the query (0 if no match)
    "bm25_title",   # BM25 over the title / best title BM25 among the candidates
    "bm25_body",    # BM25 over the body / best body BM25 among the candidates
    "coverage",     # share of the query's terms found in the article
    "dense_rr",     # 1 / (1 + rank) in the dense list, 0 if not in it
    "kw_rr",        # 1 / (1 + rank) in the keyword list, 0 if not in it
    "both",         # 1 when both retrievers returned the article
    "question_sim", # match of the query with questions the article answered before (0..1)
    "helpfulness",  # smoothed share of helpful feedback minus the overall share (-1..1)
    "stale",        # how far past its review date the article is (0 = fresh, 1 = a year)
)
# Features that come from feedback and article metadata rather than from retrieval: judged
# sets cannot teach their weights, so they start from PRIOR_COEFFICIENTS (score units) and
# feedback training moves them.
PRIOR_COEFFICIENTS: dict[str, float] = {"question_sim": 8.0, "helpfulness": 4.0, "stale": -1.0}
MODES = ("hybrid", "keyword", "dense")
MODE_FEATURES: dict[str, tuple[str, ...]] = {
    "hybrid": FEATURES,
    "dense": ("dense",),
    "keyword": ("bm25",),
}


@dataclass(frozen=True)
class Candidates:
    """Raw retrieval scores of the candidate articles of one query, aligned by position.

    ``dense_rank`` and ``keyword_rank`` are 0-based ranks in each retriever's list, -1 when
    the retriever did not return the article; keyword scores are 0 when it did not match.
    """

    ids: tuple[str, ...]
    dense: np.ndarray
    title_sim: np.ndarray
    bm25: np.ndarray
    bm25_title: np.ndarray
    bm25_body: np.ndarray
    coverage: np.ndarray
    dense_rank: np.ndarray
    keyword_rank: np.ndarray
    question_sim: np.ndarray | None = None
    helpfulness: np.ndarray | None = None
    stale: np.ndarray | None = None


_FEATURE_COLUMN = {name: column for column, name in enumerate(FEATURES)}


class FeatureRow(Mapping[str, float]):
    """One candidate's features by name (every name of FEATURES), read from its matrix row.

    A search ranks every candidate (a few hundred) but shows ten: a view over the row costs
    far less than a dict per hit.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Sequence[float]) -> None:
        """View ``values``, one per name of FEATURES in that order."""
        if len(values) != len(FEATURES):
            raise ValueError(f"a feature row has {len(FEATURES)} values, not {len(values)}")
        self._values = values

    def __getitem__(self, name: str) -> float:
        """Return the value of a named feature; KeyError for a name not in FEATURES."""
        return self._values[_FEATURE_COLUMN[name]]

    def __iter__(self) -> Iterator[str]:
        """Iterate over the feature names, in the order of FEATURES."""
        return iter(FEATURES)

    def __len__(self) -> int:
        """Return the number of features."""
        return len(FEATURES)

    def __repr__(self) -> str:
        """Show the features as a dict."""
        return repr(dict(self))


@dataclass(frozen=True)
class Hit:
    """One ranked article with its probability of solving the query."""

    id: str
    probability: float
    scores: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RankingWeights:
    """A logistic model: one coefficient per named feature, and an intercept."""

    features: tuple[str, ...]
    coefficients: tuple[float, ...]
    intercept: float

    def __post_init__(self) -> None:
        if len(self.features) != len(self.coefficients):
            raise ConfigError("ranking weights: one coefficient per feature is required")
        unknown = set(self.features) - set(FEATURES)
        if unknown:
            raise ConfigError(f"ranking weights: unknown features {sorted(unknown)}")

    def to_json(self) -> dict[str, object]:
        """Return a JSON-ready dict, feature name → coefficient."""
        return {
            "intercept": self.intercept,
            "coefficients": dict(zip(self.features, self.coefficients, strict=True)),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> RankingWeights:
        """Read weights written by :meth:`to_json`."""
        coefficients = data.get("coefficients")
        if not isinstance(coefficients, dict):
            raise ConfigError("ranking weights: 'coefficients' must be an object")
        return cls(
            features=tuple(coefficients),
            coefficients=tuple(float(v) for v in coefficients.values()),
            intercept=float(data.get("intercept", 0.0)),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Tree:
    """One regression tree as flat node arrays; a row goes left when x[feature] <= threshold."""

    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    value: tuple[float, ...]
    leaf: tuple[bool, ...]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Return the leaf value reached by each row of ``x``."""
        feature, threshold = np.asarray(self.feature), np.asarray(self.threshold)
        left, right, leaf = np.asarray(self.left), np.asarray(self.right), np.asarray(self.leaf)
        node = np.zeros(len(x), dtype=np.int64)
        rows = np.arange(len(x))
        while True:
            active = ~leaf[node]
            if not active.any():
                return np.asarray(self.value)[node]
            goes_left = x[rows, feature[node]] <= threshold[node]
            node = np.where(active, np.where(goes_left, left[node], right[node]), node)

    def to_json(self) -> dict[str, list]:
        """Return the node arrays as lists."""
        return {"feature": list(self.feature), "threshold": list(self.threshold),
                "left": list(self.left), "right": list(self.right),
                "value": list(self.value), "leaf": list(self.leaf)}

    @classmethod
    def from_json(cls, data: Mapping[str, list]) -> Tree:
        """Read node arrays written by :meth:`to_json`."""
        return cls(
            feature=tuple(int(v) for v in data["feature"]),
            threshold=tuple(float(v) for v in data["threshold"]),
            left=tuple(int(v) for v in data["left"]),
            right=tuple(int(v) for v in data["right"]),
            value=tuple(float(v) for v in data["value"]),
            leaf=tuple(bool(v) for v in data["leaf"]),
        )


@dataclass(frozen=True)
class TreeEnsemble:
    """Gradient-boosted regression trees (Friedman 2001) over named features: a log-odds score.

    ``feature`` indices in the trees refer to positions in ``features``.
    """

    features: tuple[str, ...]
    baseline: float
    trees: tuple[Tree, ...]

    def __post_init__(self) -> None:
        unknown = set(self.features) - set(FEATURES)
        if unknown:
            raise ConfigError(f"ranking trees: unknown features {sorted(unknown)}")

    def score(self, matrix: np.ndarray) -> np.ndarray:
        """Return the ensemble's raw score (log-odds) for each row of a feature matrix."""
        x = select(matrix, self.features)
        total = np.full(len(x), self.baseline)
        for tree in self.trees:
            total += tree.predict(x)
        return total

    def to_json(self) -> dict[str, object]:
        """Return a JSON-ready dict."""
        return {"type": "trees", "features": list(self.features), "baseline": self.baseline,
                "trees": [tree.to_json() for tree in self.trees]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TreeEnsemble:
        """Read an ensemble written by :meth:`to_json`."""
        return cls(
            features=tuple(data["features"]),
            baseline=float(data["baseline"]),
            trees=tuple(Tree.from_json(t) for t in data["trees"]),
        )


@dataclass(frozen=True)
class Calibration:
    """Turns a ranking score into a probability (Platt 1999, with query context).

    p = sigmoid(slope * s + gap * (s - best s of the query) + top_dense * best dense of the
    query + intercept). Within one query p grows with s (slope + gap > 0), so ranking by p
    and by s agree; across queries, a weak best match lowers every probability.
    """

    slope: float
    gap: float = 0.0
    top_dense: float = 0.0
    intercept: float = 0.0

    def __post_init__(self) -> None:
        if self.slope + self.gap <= 0 or self.slope < 0:
            raise ConfigError("calibration: probability must grow with the score")

    def to_json(self) -> dict[str, float]:
        """Return the four coefficients."""
        return {"slope": self.slope, "gap": self.gap, "top_dense": self.top_dense,
                "intercept": self.intercept}

    @classmethod
    def from_json(cls, data: Mapping[str, float]) -> Calibration:
        """Read coefficients written by :meth:`to_json`."""
        return cls(**{k: float(data.get(k, 0.0)) for k in ("slope", "gap", "top_dense",
                                                          "intercept")})


@dataclass(frozen=True)
class ModeModel:
    """How one mode ranks (a linear score over features) and calibrates (score → p)."""

    weights: RankingWeights | TreeEnsemble
    calibration: Calibration

    def to_json(self) -> dict[str, object]:
        """Return the mode's JSON document."""
        return {"score": self.weights.to_json(), "calibration": self.calibration.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ModeModel:
        """Read a mode written by :meth:`to_json`."""
        score, calibration = data.get("score"), data.get("calibration")
        if not isinstance(score, dict) or not isinstance(calibration, dict):
            raise ConfigError("ranking weights: a mode needs 'score' and 'calibration'")
        try:
            scorer = (
                TreeEnsemble.from_json(score) if score.get("type") == "trees"
                else RankingWeights.from_json(score)
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"ranking weights: malformed score model ({exc})") from None
        return cls(scorer, Calibration.from_json(calibration))


@dataclass(frozen=True)
class RankingModel:
    """The ranking and calibration of every retrieval mode, as shipped in one JSON file."""

    modes: Mapping[str, ModeModel]
    description: str = ""

    def for_mode(self, mode: str) -> ModeModel:
        """Return a mode's model; raise ConfigError if the file lacks it."""
        try:
            return self.modes[mode]
        except KeyError:
            raise ConfigError(f"ranking weights have no model for mode {mode!r}") from None

    def to_json(self) -> dict[str, object]:
        """Return the JSON document of all modes."""
        return {
            "description": self.description,
            "modes": {mode: model.to_json() for mode, model in self.modes.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> RankingModel:
        """Read a model document written by :meth:`to_json`."""
        modes = data.get("modes")
        if not isinstance(modes, dict):
            raise ConfigError("ranking weights: 'modes' must be an object")
        return cls(
            modes={mode: ModeModel.from_json(m) for mode, m in modes.items()},
            description=str(data.get("description", "")),
        )


def load_ranking_model(path: str | Path | None = None) -> RankingModel:
    """Load ranking weights from a file, or the weights shipped with kbsearch."""
    try:
        if path:
            text = Path(path).read_text("utf-8")
        else:
            text = resources.files("kbsearch").joinpath("weights/default.json").read_text("utf-8")
        return RankingModel.from_json(json.loads(text))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read ranking weights {path or 'default'}: {exc}") from None


def _relative(values: np.ndarray) -> np.ndarray:
    """Divide by the largest value (0 stays 0); all-zero input stays zero."""
    top = float(values.max()) if len(values) else 0.0
    return values / top if top > 0 else np.zeros_like(values)


def _or_zeros(values: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n) if values is None else np.asarray(values, dtype=np.float64)


def helpfulness_score(
    positive: np.ndarray, negative: np.ndarray, prior_mean: float, strength: float
) -> np.ndarray:
    """Return the Bayesian average of helpful votes minus the prior mean (0 with no votes).

    (positive + strength * prior_mean) / (positive + negative + strength) - prior_mean: an
    article needs many votes to move far from the overall mean (the "Bayesian average" of
    rating sites; a Beta(strength * mean, strength * (1 - mean)) prior on its helpful rate).
    """
    positive = np.asarray(positive, dtype=np.float64)
    negative = np.asarray(negative, dtype=np.float64)
    return (positive + strength * prior_mean) / (positive + negative + strength) - prior_mean


def staleness(days_overdue: np.ndarray, full_after_days: float = 365.0) -> np.ndarray:
    """Return 0 for articles within their review date, rising to 1 a year past it."""
    return np.clip(np.asarray(days_overdue, dtype=np.float64) / full_after_days, 0.0, 1.0)


def question_match(similarity: np.ndarray, floor: float) -> np.ndarray:
    """Return how strongly a query matches a learned question: 0 at or below ``floor``, 1 at 1.

    ``floor`` is the cosine below which two questions of the embedding model are about
    different things; above it the match rises linearly.
    """
    return np.clip((np.asarray(similarity, dtype=np.float64) - floor) / (1.0 - floor), 0.0, 1.0)


def _reciprocal_rank(ranks: np.ndarray) -> np.ndarray:
    return np.where(ranks >= 0, 1.0 / (1.0 + np.maximum(ranks, 0)), 0.0)


def feature_matrix(candidates: Candidates) -> np.ndarray:
    """Return the (n_candidates, len(FEATURES)) matrix of ranking features."""
    n = len(candidates.ids)
    if n == 0:
        return np.zeros((0, len(FEATURES)))
    dense = candidates.dense.astype(np.float64)
    title = candidates.title_sim.astype(np.float64)
    spread = float(dense.std())
    columns = {
        "dense": dense,
        "dense_gap": dense - dense.max(),
        "dense_z": (dense - dense.mean()) / spread if spread > 1e-9 else np.zeros(n),
        "title_sim": title,
        "title_gap": title - title.max(),
        "bm25": _relative(candidates.bm25.astype(np.float64)),
        "bm25_title": _relative(candidates.bm25_title.astype(np.float64)),
        "bm25_body": _relative(candidates.bm25_body.astype(np.float64)),
        "coverage": candidates.coverage.astype(np.float64),
        "dense_rr": _reciprocal_rank(candidates.dense_rank),
        "kw_rr": _reciprocal_rank(candidates.keyword_rank),
        "both": ((candidates.dense_rank >= 0) & (candidates.keyword_rank >= 0)).astype(float),
        "question_sim": _or_zeros(candidates.question_sim, n),
        "helpfulness": _or_zeros(candidates.helpfulness, n),
        "stale": _or_zeros(candidates.stale, n),
    }
    return np.column_stack([columns[name] for name in FEATURES])


def select(matrix: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Return the columns of a feature matrix for the given feature names."""
    return matrix[:, [FEATURES.index(name) for name in names]]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Return the logistic function, computed without overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def scores(matrix: np.ndarray, weights: RankingWeights | TreeEnsemble) -> np.ndarray:
    """Return the ranking score of each row of a feature matrix (linear or trees)."""
    if len(matrix) == 0:
        return np.zeros(0)
    if isinstance(weights, TreeEnsemble):
        return weights.score(matrix)
    return select(matrix, weights.features) @ np.asarray(weights.coefficients) + weights.intercept


def calibrate(score: np.ndarray, matrix: np.ndarray, calibration: Calibration) -> np.ndarray:
    """Return P(article solves the query) for the candidates of one query."""
    if len(score) == 0:
        return np.zeros(0)
    top_dense = float(matrix[:, FEATURES.index("dense")].max())
    z = (
        calibration.slope * score
        + calibration.gap * (score - score.max())
        + calibration.top_dense * top_dense
        + calibration.intercept
    )
    return sigmoid(z)


def probabilities(matrix: np.ndarray, model: ModeModel) -> np.ndarray:
    """Return the calibrated probability of each candidate of one query."""
    return calibrate(scores(matrix, model.weights), matrix, model.calibration)


def rank(
    candidates: Candidates, model: ModeModel, k: int, min_probability: float = 0.0,
    eligible: np.ndarray | None = None,
) -> list[Hit]:
    """Score candidates and return the top-k hits by probability (ties: score, dense, id).

    ``eligible`` limits the hits to some candidates (e.g. those one retriever returned),
    while the probabilities still see every candidate of the query.
    """
    matrix = feature_matrix(candidates)
    score = scores(matrix, model.weights)
    probs = calibrate(score, matrix, model.calibration)
    # np.lexsort sorts by its last key first
    order = np.lexsort((np.array(candidates.ids), -candidates.dense, -score, -probs))
    if eligible is not None:
        order = order[np.asarray(eligible, dtype=bool)[order]]
    order = order[:k]
    if min_probability > 0:
        order = order[probs[order] >= min_probability]
    rows = np.round(matrix[order], 6).tolist()  # only the rows of hits, at once
    listed = probs[order].tolist()
    return [Hit(candidates.ids[i], listed[n], FeatureRow(rows[n]))
            for n, i in enumerate(order.tolist())]


def rank_mode(
    candidates: Candidates, mode: str, model: ModeModel, k: int, min_probability: float = 0.0
) -> list[Hit]:
    """Rank for a mode: hybrid ranks every candidate; dense or keyword only their own hits."""
    if mode == "hybrid":
        return rank(candidates, model, k, min_probability)
    returned = candidates.dense_rank if mode == "dense" else candidates.keyword_rank
    return rank(candidates, model, k, eligible=returned >= 0)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = 60) -> dict[str, float]:
    """Return RRF scores, sum of 1 / (k + rank) over rankings (Cormack et al., SIGIR 2009)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for position, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + position)
    return scores
