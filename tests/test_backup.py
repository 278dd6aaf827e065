"""kbsearch backup / restore: a restored home searches and trains exactly like the original."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading

import pytest
from click.testing import CliRunner

from kbsearch.backup import backup, restore
from kbsearch.cli import main
from kbsearch.errors import BackupError
from kbsearch.index.builds import current_version
from kbsearch.ranking.versions import default_ranker
from kbsearch.stores.callbacks import CallbackRequest

from .conftest import make_settings

QUERIES = ("Zählerstand melden", "Router blinkt rot", "Abschlag ändern", "WLAN langsam")


@pytest.fixture
def home(tmp_path, sample_index, fake_embedder):
    """A used installation: searches with feedback, a bot turn, a callback, keys, weights."""
    from kbsearch.api import create_app
    from kbsearch.http.context import Components
    from kbsearch.service import SearchService

    shutil.copytree(sample_index, tmp_path / "a" / "index")
    settings = make_settings(tmp_path / "a", index=tmp_path / "a" / "index")
    service = SearchService(settings, embedder=fake_embedder)
    app = create_app({"TESTING": True}, search_service=service)
    client = app.test_client()
    parts = Components.of(app)
    bot = parts.keys.create("bot", "Chatbot")[1]
    for n, query in enumerate(QUERIES * 2):
        env = {"REMOTE_ADDR": f"10.0.0.{n}"}
        found = client.get("/api/v1/search", query_string={"q": query}, environ_base=env)
        body = found.get_json()
        assert client.post("/api/v1/feedback", environ_base=env, json={
            "search_id": body["search_id"], "feedback_token": body["feedback_token"],
            "article_id": body["results"][0]["id"],
            "event": "helpful"}).status_code == 201
    assert client.post("/api/v1/bot/turn", headers={"Authorization": f"Bearer {bot}"},
                       json={"conversation_id": "c-1", "message": "PUK vergessen"}
                       ).status_code == 200
    parts.callbacks.add(CallbackRequest("Erika Muster", "030 1234567", "morning",
                                        "Abschlag zu hoch", "de", "search: Abschlag"))
    version = service.weights.save(default_ranker(), "default", {})
    service.weights.promote(version)
    return settings, service


def state(settings, embedder):
    """Everything a restore must bring back: search results, training input, stores."""
    from kbsearch.service import SearchService
    from kbsearch.stores.callbacks import SQLiteCallbackStore
    from kbsearch.stores.keys import KeyStore

    service = SearchService(settings, embedder=embedder)
    results = [[(r.article.id, round(r.hit.probability, 9))
                for r in service.search(q, log=False).results] for q in QUERIES]
    callbacks = [(c.reference, c.request) for c in SQLiteCallbackStore(settings.channels_db)
                 .recent(status=None)]
    keys = [(k.key_id, k.role, k.name) for k in KeyStore(settings.keys_file).list()]
    return {"results": results, "searches": list(service.feedback.searches()),
            "feedback_token": service.tokens.token("0" * 32),
            "events": list(service.feedback.events()), "callbacks": callbacks,
            "keys": keys, "weights": service.weights.current_version(),
            "index": current_version(settings.index)}


def test_a_restored_home_searches_and_trains_like_the_original(home, tmp_path, fake_embedder):
    settings, _ = home
    summary = backup(settings, tmp_path / "backup")
    assert set(summary.parts) == {"data/feedback.sqlite3", "data/channels.sqlite3",
                                  "data/keys.json", "data/feedback.secret", "weights", "index"}
    empty = make_settings(tmp_path / "b", index=tmp_path / "b" / "index")
    restored = restore(empty, tmp_path / "backup")
    assert restored.index_version == current_version(settings.index)
    before, after = state(settings, fake_embedder), state(empty, fake_embedder)
    assert len(before["searches"]) == 9 and len(before["events"]) == 8  # and a bot turn
    assert after == before
    with sqlite3.connect(empty.feedback_db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_backup_taken_while_feedback_is_written_is_consistent(home, tmp_path):
    settings, service = home
    stop = threading.Event()

    def search_on() -> None:
        while not stop.is_set():
            service.search("Zählerstand melden", client="busy")

    writer = threading.Thread(target=search_on)
    writer.start()
    try:
        backup(settings, tmp_path / "backup")
    finally:
        stop.set()
        writer.join()
    with sqlite3.connect(tmp_path / "backup" / "data" / "feedback.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        shown = conn.execute("SELECT COUNT(DISTINCT search_id) FROM shown").fetchone()[0]
        searches = conn.execute("SELECT COUNT(*) FROM searches").fetchone()[0]
    assert shown == searches >= 9  # every search with its results, none half-written


def test_a_damaged_or_changed_backup_is_refused_and_nothing_is_written(home, tmp_path):
    settings, _ = home
    folder = tmp_path / "backup"
    backup(settings, folder)
    empty = make_settings(tmp_path / "b", index=tmp_path / "b" / "index")
    keys = folder / "data" / "keys.json"
    keys.write_text(keys.read_text("utf-8").replace("Chatbot", "Chatbob"), "utf-8")
    with pytest.raises(BackupError, match="data/keys.json does not match its checksum"):
        restore(empty, folder)
    assert not (tmp_path / "b").exists()
    shutil.copy(settings.keys_file, keys)
    (folder / "weights" / "extra.json").write_text("{}", "utf-8")
    with pytest.raises(BackupError, match="weights/extra.json is not in the manifest"):
        restore(empty, folder)
    (folder / "weights" / "extra.json").unlink()
    (folder / "data" / "channels.sqlite3").unlink()
    with pytest.raises(BackupError, match="data/channels.sqlite3 is missing"):
        restore(empty, folder)
    with pytest.raises(BackupError, match="is not a kbsearch backup"):
        restore(empty, tmp_path)


def test_restore_replaces_an_installation_only_when_forced(home, tmp_path, fake_embedder):
    settings, service = home
    backup(settings, tmp_path / "backup")
    before = state(settings, fake_embedder)
    service.search("Passwort vergessen", client="later")  # made after the backup
    with pytest.raises(BackupError, match="already hold data"):
        restore(settings, tmp_path / "backup")
    assert len(list(service.feedback.searches())) == 10
    restore(settings, tmp_path / "backup", force=True)
    assert state(settings, fake_embedder) == before


def test_backup_needs_a_new_or_empty_folder(home, tmp_path):
    settings, _ = home
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x", "utf-8")
    with pytest.raises(BackupError, match="is not an empty folder"):
        backup(settings, tmp_path / "full")


def test_the_commands_report_what_they_did(home, tmp_path):
    settings, _ = home
    env = {"KBSEARCH_HOME": str(tmp_path / "a"), "KBSEARCH_INDEX": str(settings.index),
           "KBSEARCH_FEEDBACK_DB": str(settings.feedback_db),
           "KBSEARCH_CHANNELS_DB": str(settings.channels_db),
           "KBSEARCH_KEYS_FILE": str(settings.keys_file),
           "KBSEARCH_WEIGHTS_DIR": str(settings.weights_dir)}
    runner = CliRunner()
    made = runner.invoke(main, ["backup", str(tmp_path / "backup"), "--json"], env=env)
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["index_version"] == current_version(settings.index)
    again = runner.invoke(main, ["restore", str(tmp_path / "backup")], env=env)
    assert again.exit_code == 1 and "already hold data" in again.output
    assert "Traceback" not in again.output
    forced = runner.invoke(main, ["restore", str(tmp_path / "backup"), "--force"], env=env)
    assert forced.exit_code == 0 and forced.output.startswith("restored from")
