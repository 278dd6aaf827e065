"""scripts/compare_servers.py: two checkouts served side by side, searched interleaved."""

from __future__ import annotations

import json

import pytest

from .conftest import ARTICLES, MODEL, ROOT, SHARED_EVAL
from .test_bench import load_script


@pytest.mark.slow
def test_two_servers_answer_the_same_queries_in_turn(model_index, tmp_path, capsys):
    if not (SHARED_EVAL / "stackfaq_en").exists():
        pytest.skip("no evaluation sets in ../shared/eval")
    compare = load_script("compare_servers")
    base = tmp_path / "base"
    base.mkdir()
    (base / "articles").symlink_to(ARTICLES)
    (base / "index").symlink_to(model_index)
    other = tmp_path / "other"  # a second checkout: this one's package, linked
    other.mkdir()
    (other / "kbsearch").symlink_to(ROOT / "kbsearch")
    assert compare.main([str(base), str(ROOT), str(other), "--queries", "12",
                         "--eval-dir", str(SHARED_EVAL), "--models", str(MODEL), str(MODEL),
                         "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["queries"] == 12
    model = MODEL.resolve()
    assert set(result["servers"]) == {f"{ROOT} ({model})", f"{other.resolve()} ({model})"}
    for figures in result["servers"].values():
        assert 0 < figures["p50"] <= figures["p95"] <= figures["p99"]
    with pytest.raises(SystemExit):  # not a checkout
        compare.main([str(base), str(ROOT), str(tmp_path)])
