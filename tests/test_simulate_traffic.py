"""scripts/simulate_traffic.py: a simulated week that the report and the gaps can read."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sqlite3
import sys

from kbsearch.learning.report import build_report
from kbsearch.stores.callbacks import SQLiteCallbackStore
from kbsearch.stores.feedback_sqlite import SQLiteFeedbackStore
from kbsearch.stores.handoffs import SQLiteHandoffStore

from .conftest import ROOT
from .fakes import FakeEmbedder


def load_script():
    spec = importlib.util.spec_from_file_location(
        "simulate_traffic", ROOT / "scripts" / "simulate_traffic.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_a_simulated_stretch_of_days_is_what_the_report_reads(tmp_path):
    script = load_script()
    week = script.Week(tmp_path, seed=3, embedder=FakeEmbedder())
    week.run(days=2, per_day=30)
    counts = week.counts
    data = tmp_path / "data"
    feedback = SQLiteFeedbackStore(data / "feedback.sqlite3")
    report = build_report(feedback, SQLiteHandoffStore(data / "channels.sqlite3"),
                          SQLiteCallbackStore(data / "channels.sqlite3"),
                          gap_below=0.3, gap_min_searches=2)
    channels = {s.key: s.searches for s in report.channels}
    assert channels["faq"] == counts["faq_searches"]
    assert channels["agent"] == counts["assist_calls"]
    assert channels["bot"] > 0 and report.callbacks == counts["callbacks"]
    days = {dt.datetime.fromtimestamp(s.created, dt.UTC).date() for s in feedback.searches()}
    assert days == {script.START.date(), script.START.date() + dt.timedelta(days=1)}
    assert all(7 <= dt.datetime.fromtimestamp(s.created, dt.UTC).hour < 23
               for s in feedback.searches())
    # the questions that carried personal data arrived redacted
    assert counts["with_personal_data"] > 0
    with sqlite3.connect(data / "feedback.sqlite3") as conn:
        stored = " ".join(q for (q,) in conn.execute("SELECT query FROM searches"))
    assert "@example" not in stored and "0171" not in stored
    assert "[email]" in stored or "[phone]" in stored or "[number]" in stored
