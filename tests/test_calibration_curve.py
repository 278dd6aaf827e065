"""scripts/calibration_curve.py: ECE on the rest of a set after n judged queries."""

from __future__ import annotations

from kbsearch.learning.evaluation import JudgedQueries, load_judgments
from kbsearch.ranking.versions import default_ranker

from .conftest import ARTICLES
from .test_bench import load_script


def test_the_curve_fits_on_n_queries_and_scores_the_rest(sample_service) -> None:
    script = load_script("calibration_curve")
    known = [a.id for a in sample_service.index().articles]
    judged = JudgedQueries(sample_service, load_judgments(ARTICLES / "judgments.tsv", known))
    rows = judged.queries(sample_service.ranker())
    model = default_ranker().model.for_mode("hybrid")
    result = script.curve(rows, model, [10, 30, 60], draws=4, seed=0)
    assert result["queries"] == len(rows) == 62
    assert result["shipped"] == round(script.ece(rows, model, model.calibration), 4)
    assert set(result["sizes"]) == {"10", "30"}  # 60 leaves too few queries to score
    for figures in result["sizes"].values():
        assert figures["draws"] == 4
        assert 0.0 <= figures["min"] <= figures["mean"] <= figures["max"] <= 1.0
    assert script.curve(rows, model, [10, 30, 60], draws=4, seed=0) == result  # seeded
    assert script.curve(rows, model, [10], draws=4, seed=1) != script.curve(
        rows, model, [10], draws=4, seed=0)
