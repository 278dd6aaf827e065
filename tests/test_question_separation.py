"""scripts/question_separation.py: how far apart learned questions keep a set's articles."""

from __future__ import annotations

import numpy as np
import pytest

from .test_bench import load_script


def unit(*rows: list[float]) -> np.ndarray:
    matrix = np.array(rows, dtype=np.float64)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_closest_cosines_split_queries_of_the_same_article_from_the_others() -> None:
    script = load_script("question_separation")
    vectors = unit([1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.8, 0.6], [0, 0, 1])
    solved_by = [frozenset({"a"}), frozenset({"a", "b"}), frozenset({"b"}),
                 frozenset({"c"}), frozenset({"d"})]
    same, other = script.closest_cosines(vectors, solved_by)
    similarity = vectors @ vectors.T
    # queries 0, 1 and 2 share an article with another query; 3 and 4 with none
    assert same == pytest.approx([similarity[0, 1], similarity[1, 0],
                                  similarity[2, 1]])
    assert len(other) == 5
    assert other[0] == pytest.approx(max(similarity[0, 2:]))  # 1 shares "a": not "other"
    assert other[3] == pytest.approx(max(similarity[3, [0, 1, 2, 4]]))


def test_separation_reports_quantiles_and_the_share_above_each_floor() -> None:
    script = load_script("question_separation")
    same = np.array([0.95, 0.96, 0.97, 0.91])
    other = np.array([0.89, 0.90, 0.93, 0.85, 0.80])
    report = script.separation(same, other, [0.9, 0.92])
    assert report["queries_with_same"] == 4 and report["queries"] == 5
    assert report["same"]["p50"] == pytest.approx(0.955)
    assert report["above_floor"]["0.9"] == {"same": 1.0, "other": 0.2}
    assert report["above_floor"]["0.92"] == {"same": 0.75, "other": 0.2}
    empty = script.separation(np.zeros(0), other, [0.9])
    assert empty["same"] == {} and empty["above_floor"]["0.9"]["same"] == 0.0
