import numpy as np
import pytest

from kbsearch.errors import ConfigError
from kbsearch.ranking.memory import (
    SECONDS_PER_DAY,
    AnsweredQuestion,
    MemoryLimits,
    QuestionMemory,
    build_memory,
    empty_memory,
)
from kbsearch.ranking.scoring import question_match


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


NOW = 1_000 * SECONDS_PER_DAY


def asked(article: str, vector: np.ndarray, client: str, days_ago: float = 0.0):
    return AnsweredQuestion(article, vector, client, NOW - days_ago * SECONDS_PER_DAY)


def test_question_match_is_zero_below_the_floor_and_one_at_identity():
    assert question_match(np.array([0.5, 0.85, 0.925, 1.0]), 0.85).tolist() == pytest.approx(
        [0.0, 0.0, 0.5, 1.0]
    )


def test_one_client_alone_reaches_half_weight_and_more_clients_raise_it():
    q = unit(1, 0, 0)
    one = build_memory([asked("a", q, "c1")], NOW)
    assert len(one) == 1 and one.weights[0] == pytest.approx(0.5)
    three = build_memory([asked("a", q, f"c{i}") for i in range(3)], NOW)
    assert len(three) == 1 and three.weights[0] == pytest.approx(0.875)


def test_a_client_cannot_plant_more_than_its_share():
    rng = np.random.default_rng(0)
    flood = [asked("wrong", unit(*rng.normal(size=8)), "attacker", days_ago=i / 1000)
             for i in range(1000)]
    memory = build_memory(flood, NOW, MemoryLimits(per_client=3))
    assert len(memory) == 3
    assert memory.weights.max() == pytest.approx(0.5, abs=1e-3)


def test_weights_decay_with_age_and_articles_keep_a_bounded_number():
    old = build_memory([asked("a", unit(1, 0), "c", days_ago=180)], NOW,
                       MemoryLimits(half_life_days=180))
    assert old.weights[0] == pytest.approx(0.25)
    many = [asked("a", unit(np.cos(t), np.sin(t)), f"c{i}") for i, t in
            enumerate(np.linspace(0, 3, 40))]
    capped = build_memory(many, NOW, MemoryLimits(per_article=5, merge_at=0.999))
    assert len(capped) == 5


def test_match_returns_best_weighted_match_per_article():
    memory = QuestionMemory(
        ("a", "a", "b"), np.vstack([unit(1, 0), unit(0, 1), unit(1, 1)]),
        np.array([0.5, 1.0, 1.0]), floor=0.8,
    )
    found = memory.match(unit(1, 0))
    assert found == {"a": pytest.approx(0.5)}  # b's cosine 0.707 is below the floor
    assert memory.match(unit(0, 1)) == {"a": pytest.approx(1.0)}
    # several questions of an article add up, capped at 1
    close = unit(1, 0.3)  # cosine 0.958 with (1, 0), 0.287 with (0, 1)
    sum_memory = QuestionMemory(("a", "a"), np.vstack([unit(1, 0), unit(1, 0.05)]),
                                np.array([0.5, 0.5]), floor=0.8)
    both = question_match(np.array([close @ unit(1, 0), close @ unit(1, 0.05)]), 0.8)
    assert sum_memory.match(close) == {"a": pytest.approx(0.5 * both.sum())}
    assert memory.match(unit(0.1, 1))["a"] <= 1.0


def test_save_and_load_round_trip_without_pickle(tmp_path):
    memory = build_memory([asked("a", unit(1, 2, 3), "c1"), asked("b", unit(3, 2, 1), "c2")],
                          NOW)
    path = tmp_path / "q.npz"
    memory.save(path)
    again = QuestionMemory.load(path)
    assert again.article_ids == memory.article_ids
    assert np.allclose(again.vectors, memory.vectors, atol=1e-3)
    assert np.allclose(again.weights, memory.weights)
    assert len(empty_memory()) == 0 and empty_memory().match(unit(1, 0)) == {}
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="bad.npz"):
        QuestionMemory.load(tmp_path / "bad.npz")
