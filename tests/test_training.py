import numpy as np

from kbsearch.ranking import FEATURES, probabilities, scores
from kbsearch.training import JudgedQuery, fit_calibration, fit_listwise, fit_mode


def synthetic_queries(n: int = 200, seed: int = 3) -> list[JudgedQuery]:
    """Queries whose relevant candidate has the highest 'title_sim' but random 'dense'."""
    rng = np.random.default_rng(seed)
    queries = []
    for _ in range(n):
        matrix = rng.uniform(0, 1, size=(8, len(FEATURES)))
        relevant = np.zeros(8)
        best = int(np.argmax(matrix[:, FEATURES.index("title_sim")]))
        relevant[best] = 1.0
        queries.append(JudgedQuery(matrix, relevant))
    return queries


def test_listwise_learns_the_informative_feature():
    weights = fit_listwise(synthetic_queries(), ("dense", "title_sim"), l2=1e-4)
    dense, title = weights.coefficients
    assert title > 5 * abs(dense) and title > 0
    held_out = synthetic_queries(seed=11)
    hits = [np.argmax(scores(q.matrix, weights)) == np.argmax(q.relevant) for q in held_out]
    assert np.mean(hits) > 0.95


def test_calibration_is_monotone_and_close_to_observed_rates():
    queries = synthetic_queries()
    model = fit_mode(queries, ("dense", "title_sim"))
    assert model.calibration.slope + model.calibration.gap > 0
    held_out = synthetic_queries(seed=5)
    top_p = [probabilities(q.matrix, model).max() for q in held_out]
    assert 0.7 < np.mean(top_p) <= 1.0  # the top candidate is right in >95 % of queries


def test_single_feature_mode_keeps_the_retriever_order():
    model = fit_mode(synthetic_queries(50), ("dense",))
    assert model.weights.coefficients == (1.0,)
    assert fit_calibration(synthetic_queries(50), model.weights).slope >= 0
