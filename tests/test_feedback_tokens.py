"""Feedback tokens: their secret file, their checks, and searches logged before owners."""

from __future__ import annotations

import sqlite3
import stat

import pytest

from kbsearch.errors import ConfigError
from kbsearch.stores import feedback_sqlite
from kbsearch.stores.feedback_sqlite import SQLiteFeedbackStore
from kbsearch.stores.feedback_tokens import TOKEN_CHARS, FeedbackTokens

from .test_feedback import make_search


def test_the_secret_is_made_once_private_and_shared_by_every_reader(tmp_path):
    path = tmp_path / "data" / "feedback.secret"
    first, second = FeedbackTokens(path), FeedbackTokens(path)
    token = first.token("a" * 32)
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) == TOKEN_CHARS and second.token("a" * 32) == token
    assert second.verify("a" * 32, token) and not second.verify("b" * 32, token)
    assert [p.name for p in path.parent.iterdir()] == ["feedback.secret"]  # no temporary left
    other = FeedbackTokens(tmp_path / "other.secret")
    assert other.token("a" * 32) != token  # another installation's tokens never fit


@pytest.mark.parametrize("token", [None, 7, "", "x" * TOKEN_CHARS, "ä" * TOKEN_CHARS])
def test_anything_but_the_token_is_refused(tmp_path, token):
    assert not FeedbackTokens(tmp_path / "s").verify("a" * 32, token)


@pytest.mark.parametrize("content", ["", "nothex", "ab" * 8])
def test_a_damaged_secret_file_is_named(tmp_path, content):
    path = tmp_path / "feedback.secret"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        FeedbackTokens(path).token("a" * 32)
    assert str(path) in str(caught.value) and "64 hex digits" in str(caught.value)


def test_the_secret_defaults_to_beside_the_feedback_database(tmp_path):
    from .conftest import make_settings

    settings = make_settings(tmp_path)
    assert settings.feedback_secret_file == tmp_path / "feedback.secret"
    chosen = settings.replace(feedback_secret="/run/secrets/kb")
    assert str(chosen.feedback_secret_file) == "/run/secrets/kb"


def test_searches_logged_before_owners_existed_count_as_made_without_a_key(tmp_path):
    path = tmp_path / "fb.db"
    with sqlite3.connect(path) as conn:  # a store of schema version 2, with one search
        for statement in (s for step in feedback_sqlite.MIGRATIONS[:2] for s in step):
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.execute("INSERT INTO searches (search_id, created, query, channel, client, "
                     "index_version, model_version, feature_names, query_vector) "
                     "VALUES ('old', 1, 'Router', 'api', '', 'i', 'm', '[]', x'')")
    with SQLiteFeedbackStore(path) as opened:
        assert opened.get_search("old").owner == ""
        opened.log_search(make_search("s2", owner="k1"))
        assert opened.get_search("s2").owner == "k1"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
