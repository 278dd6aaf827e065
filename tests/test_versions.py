import json

import numpy as np
import pytest

from kbsearch.ranking.memory import AnsweredQuestion, build_memory
from kbsearch.ranking.scoring import RankingWeights, load_ranking_model
from kbsearch.ranking.versions import (
    DEFAULT_VERSION,
    Helpfulness,
    Ranker,
    VersionNotFoundError,
    WeightsStore,
)


def trained(scale: float) -> Ranker:
    model = load_ranking_model()
    hybrid = model.modes["hybrid"]
    weights = RankingWeights(hybrid.weights.features,
                             tuple(c * scale for c in hybrid.weights.coefficients), 0.0)
    memory = build_memory([AnsweredQuestion("a", np.ones(4, np.float32), "c", 0.0)], 0.0)
    return Ranker("", type(model)({**model.modes, "hybrid": type(hybrid)(
        weights, hybrid.calibration)}), memory, Helpfulness({"a": (3.0, 1.0)}, 0.6, 10.0))


def test_without_versions_the_shipped_weights_are_current(tmp_path):
    store = WeightsStore(tmp_path / "weights")
    assert store.current_version() == DEFAULT_VERSION
    ranker = store.load()
    assert ranker.version == DEFAULT_VERSION and len(ranker.questions) == 0
    assert [v.version for v in store.list()] == [DEFAULT_VERSION]


def test_save_keeps_a_candidate_until_promoted(tmp_path):
    store = WeightsStore(tmp_path)
    version = store.save(trained(2.0), DEFAULT_VERSION, {"held_out_dcg": {"new": 0.5}})
    assert store.current_version() == DEFAULT_VERSION
    loaded = store.load(version)
    assert loaded.version == version and len(loaded.questions) == 1
    assert loaded.helpfulness.counts == {"a": (3.0, 1.0)}
    assert loaded.model.modes["hybrid"].weights == trained(2.0).model.modes["hybrid"].weights
    assert store.document(version)["report"] == {"held_out_dcg": {"new": 0.5}}
    store.promote(version, "better")
    assert store.current_version() == version
    info = {v.version: v for v in store.list()}
    assert info[version].current and info[version].status == "promoted"


def test_rollback_steps_back_through_promotions_to_the_default(tmp_path):
    store = WeightsStore(tmp_path)
    first = store.save(trained(1.1), DEFAULT_VERSION, {})
    second = store.save(trained(1.2), first, {})
    store.promote(first)
    store.promote(second)
    stamp = store.current_stamp()
    assert store.rollback() == first and store.current_version() == first
    assert store.current_stamp() >= stamp
    assert store.rollback() == DEFAULT_VERSION
    assert store.current_version() == DEFAULT_VERSION
    with pytest.raises(VersionNotFoundError, match="nothing to roll back"):
        store.rollback()


def test_unknown_and_malformed_versions_are_named(tmp_path):
    store = WeightsStore(tmp_path)
    with pytest.raises(VersionNotFoundError, match="no weights version 'nope'"):
        store.load("nope")
    with pytest.raises(VersionNotFoundError, match="not a weights version name"):
        store.load("../etc")
    (tmp_path / "broken.json").write_text("{", "utf-8")
    from kbsearch.errors import ConfigError

    with pytest.raises(ConfigError, match="broken.json"):
        store.load("broken")
    # a CURRENT naming a missing version falls back to the shipped weights
    (tmp_path / "CURRENT").write_text("gone\n", "utf-8")
    assert store.current_version() == DEFAULT_VERSION
    assert json.loads(json.dumps(store.document(DEFAULT_VERSION)))["status"] == "shipped"


def test_helpfulness_scores_shrink_towards_the_prior():
    helpful = Helpfulness({"good": (30.0, 0.0), "bad": (0.0, 30.0), "new": (1.0, 0.0)}, 0.5, 10)
    good, bad, new, unseen = helpful.scores(["good", "bad", "new", "unseen"])
    assert good == pytest.approx(35 / 40 - 0.5) and bad == pytest.approx(5 / 40 - 0.5)
    assert 0 < new < good and unseen == 0.0
