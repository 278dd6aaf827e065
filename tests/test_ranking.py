import math

import numpy as np
import pytest

from kbsearch.errors import ConfigError
from kbsearch.ranking.scoring import (
    FEATURES,
    Calibration,
    Candidates,
    FeatureRow,
    Hit,
    ModeModel,
    RankingModel,
    RankingWeights,
    Tree,
    TreeEnsemble,
    calibrate,
    feature_matrix,
    load_ranking_model,
    probabilities,
    rank,
    reciprocal_rank_fusion,
    scores,
    sigmoid,
)


def candidates() -> Candidates:
    return Candidates(
        ids=("a", "b", "c"),
        dense=np.array([0.9, 0.8, 0.7]),
        title_sim=np.array([0.5, 0.9, 0.6]),
        bm25=np.array([4.0, 0.0, 2.0]),
        bm25_title=np.array([1.0, 0.0, 0.0]),
        bm25_body=np.array([3.0, 0.0, 1.5]),
        coverage=np.array([1.0, 0.0, 0.5]),
        dense_rank=np.array([0, 1, -1]),
        keyword_rank=np.array([0, -1, 1]),
    )


def column(matrix: np.ndarray, name: str) -> list[float]:
    return [round(v, 6) for v in matrix[:, FEATURES.index(name)]]


def test_features_by_hand():
    m = feature_matrix(candidates())
    assert column(m, "dense") == [0.9, 0.8, 0.7]
    assert column(m, "dense_gap") == [0.0, -0.1, -0.2]
    std = np.std([0.9, 0.8, 0.7])
    assert column(m, "dense_z") == [round(0.1 / std, 6), 0.0, round(-0.1 / std, 6)]
    assert column(m, "title_gap") == [-0.4, 0.0, -0.3]
    assert column(m, "bm25") == [1.0, 0.0, 0.5]
    assert column(m, "bm25_title") == [1.0, 0.0, 0.0]
    assert column(m, "bm25_body") == [1.0, 0.0, 0.5]
    assert column(m, "dense_rr") == [1.0, 0.5, 0.0]
    assert column(m, "kw_rr") == [1.0, 0.0, 0.5]
    assert column(m, "both") == [1.0, 0.0, 0.0]


def test_all_zero_keyword_scores_stay_zero():
    c = candidates()
    c = Candidates(**{**c.__dict__, "bm25": np.zeros(3), "bm25_title": np.zeros(3)})
    m = feature_matrix(c)
    assert column(m, "bm25") == [0.0, 0.0, 0.0]


def test_sigmoid_is_stable_and_exact():
    assert sigmoid(np.array([0.0]))[0] == 0.5
    assert math.isclose(sigmoid(np.array([2.0]))[0], 1 / (1 + math.exp(-2)))
    assert sigmoid(np.array([-1000.0, 1000.0])).tolist() == [0.0, 1.0]


def test_score_is_the_weighted_sum():
    weights = RankingWeights(("dense", "bm25"), (2.0, 1.0), -1.0)
    s = scores(feature_matrix(candidates()), weights)
    assert np.allclose(s, [2 * 0.9 + 1.0 - 1, 2 * 0.8 - 1, 2 * 0.7 + 0.5 - 1])


def test_calibration_by_hand():
    matrix = feature_matrix(candidates())
    calibration = Calibration(slope=2.0, gap=1.0, top_dense=-1.0, intercept=0.5)
    s = np.array([1.0, 0.0, -1.0])
    p = calibrate(s, matrix, calibration)
    expected = [1 / (1 + math.exp(-(2 * v + (v - 1.0) - 0.9 + 0.5))) for v in s]
    assert np.allclose(p, expected)
    assert p[0] > p[1] > p[2]


def test_calibration_must_keep_probability_monotone_in_the_score():
    with pytest.raises(ConfigError, match="grow with the score"):
        Calibration(slope=1.0, gap=-2.0)


MODEL = ModeModel(RankingWeights(("title_sim",), (10.0,), -6.0), Calibration(slope=1.0))


def test_rank_sorts_by_probability_and_cuts_at_k_and_threshold():
    hits = rank(candidates(), MODEL, k=2)
    assert [h.id for h in hits] == ["b", "c"]
    assert hits[0].probability > hits[1].probability
    assert hits[0].probability == pytest.approx(1 / (1 + math.exp(-(10 * 0.9 - 6))))
    assert set(hits[0].scores) == set(FEATURES)
    assert [h.id for h in rank(candidates(), MODEL, k=3, min_probability=0.5)] == ["b", "c"]
    assert [h.id for h in rank(candidates(), MODEL, k=3, eligible=np.array([1, 0, 1]))] == [
        "c", "a"]
    assert np.allclose(
        probabilities(feature_matrix(candidates()), MODEL),
        sigmoid(np.array([10 * 0.5 - 6, 10 * 0.9 - 6, 10 * 0.6 - 6])),
    )


def reference_rank(candidates: Candidates, model: ModeModel, k: int) -> list[Hit]:
    """rank as written before it sorted with numpy: sorted() on the tie-breaking key."""
    matrix = feature_matrix(candidates)
    score = scores(matrix, model.weights)
    probs = calibrate(score, matrix, model.calibration)
    order = sorted(range(len(probs)), key=lambda i: (
        -probs[i], -score[i], -candidates.dense[i], candidates.ids[i]))[:k]
    rows = np.round(matrix, 6).tolist()
    return [Hit(candidates.ids[i], float(probs[i]), dict(zip(FEATURES, rows[i], strict=True)))
            for i in order]


def test_rank_breaks_ties_by_score_then_dense_then_id_as_sorted_did():
    rng = np.random.default_rng(5)
    for n in (0, 1, 7, 60):
        ids = tuple(f"a{i:03d}" for i in rng.permutation(n))
        # few distinct values, so that probabilities, scores and dense tie often
        values = [rng.integers(0, 3, n) / 4 for _ in range(6)]
        tied = Candidates(ids, *values, rng.integers(-1, 3, n), rng.integers(-1, 3, n))
        for k in (1, 5, n):
            assert rank(tied, MODEL, k) == reference_rank(tied, MODEL, k)


def test_a_hits_features_read_like_a_dict():
    row = FeatureRow([float(i) for i in range(len(FEATURES))])
    as_dict = {name: float(i) for i, name in enumerate(FEATURES)}
    assert row == as_dict and dict(row) == as_dict and list(row) == list(FEATURES)
    assert row["coverage"] == FEATURES.index("coverage") and len(row) == len(FEATURES)
    with pytest.raises(KeyError):
        row["nonsense"]
    with pytest.raises(ValueError, match="15 values, not 2"):
        FeatureRow([1.0, 2.0])


def test_weights_round_trip_and_reject_unknown_features():
    weights = RankingWeights(("dense", "coverage"), (1.5, -0.5), 0.25)
    assert RankingWeights.from_json(weights.to_json()) == weights
    assert ModeModel.from_json(MODEL.to_json()) == MODEL
    with pytest.raises(ConfigError, match="unknown features"):
        RankingWeights(("shoe_size",), (1.0,), 0.0)
    with pytest.raises(ConfigError, match="one coefficient per feature"):
        RankingWeights(("dense",), (1.0, 2.0), 0.0)


def test_shipped_weights_cover_every_mode():
    model = load_ranking_model()
    assert set(model.modes) == {"hybrid", "dense", "keyword"}
    assert RankingModel.from_json(model.to_json()) == model


def test_missing_weights_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read ranking weights"):
        load_ranking_model(tmp_path / "missing.json")


def test_reciprocal_rank_fusion_by_hand():
    scores = reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=60)
    assert math.isclose(scores["a"], 1 / 61)
    assert math.isclose(scores["b"], 1 / 62 + 1 / 61)
    assert math.isclose(scores["c"], 1 / 62)


STUMP = Tree(feature=(0, 0, 0), threshold=(0.75, 0.0, 0.0), left=(1, 0, 0), right=(2, 0, 0),
             value=(0.0, -1.0, 2.0), leaf=(False, True, True))


def test_tree_prediction_by_hand():
    x = np.array([[0.7], [0.75], [0.9]])
    assert STUMP.predict(x).tolist() == [-1.0, -1.0, 2.0]
    ensemble = TreeEnsemble(("dense",), 0.5, (STUMP, STUMP))
    assert scores(feature_matrix(candidates()), ensemble).tolist() == [4.5, 4.5, -1.5]
    assert TreeEnsemble.from_json(ensemble.to_json()) == ensemble


def test_malformed_tree_model_is_a_config_error():
    with pytest.raises(ConfigError, match="malformed score model"):
        ModeModel.from_json({"score": {"type": "trees", "features": ["dense"]},
                             "calibration": {"slope": 1.0}})
