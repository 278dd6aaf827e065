"""scripts/compare_servers.py: two checkouts served side by side, searched interleaved."""

from __future__ import annotations

import json
import sqlite3

import pytest

from kbsearch.backup import copy_database
from kbsearch.stores.feedback_sqlite import SQLiteFeedbackStore

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
    log = tmp_path / "log.sqlite3"
    SQLiteFeedbackStore(log).close()
    assert compare.main([str(base), str(ROOT), str(other), "--queries", "12",
                         "--eval-dir", str(SHARED_EVAL), "--models", str(MODEL), str(MODEL),
                         "--search-log", str(log), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["queries"] == 12
    model = MODEL.resolve()
    assert set(result["servers"]) == {f"{ROOT} ({model})", f"{other.resolve()} ({model})"}
    for figures in result["servers"].values():
        assert 0 < figures["p50"] <= figures["p95"] <= figures["p99"]
    with pytest.raises(SystemExit):  # not a checkout
        compare.main([str(base), str(ROOT), str(tmp_path)])
    with sqlite3.connect(log) as conn:  # the servers logged into copies of it
        assert conn.execute("SELECT count(*) FROM searches").fetchone()[0] == 0


def test_a_search_log_is_copied_with_what_its_wal_holds(tmp_path, capsys):
    compare = load_script("compare_servers")
    source = tmp_path / "source.sqlite3"
    writer = sqlite3.connect(source, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE searches (query TEXT)")
    writer.executemany("INSERT INTO searches VALUES (?)", [("Zählerstand",), ("Umzug",)])
    assert (tmp_path / "source.sqlite3-wal").stat().st_size > 0  # the rows are in the WAL
    copy_database(source, tmp_path / "copy.sqlite3")  # what --search-log copies with
    writer.close()
    with sqlite3.connect(tmp_path / "copy.sqlite3") as conn:
        assert conn.execute("SELECT query FROM searches").fetchall() == [
            ("Zählerstand",), ("Umzug",)]
    with pytest.raises(SystemExit):
        compare.main([str(tmp_path), str(ROOT), str(ROOT), "--search-log",
                      str(tmp_path / "missing.sqlite3")])
    assert "--search-log" in capsys.readouterr().err
