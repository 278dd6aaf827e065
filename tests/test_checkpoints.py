"""WAL checkpoints on a thread of their own (kbsearch.stores.checkpoints)."""

from __future__ import annotations

import gc
import logging
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from kbsearch.errors import StoreError
from kbsearch.stores import checkpoints
from kbsearch.stores.checkpoints import FALLBACK_PAGES, BackgroundCheckpointer
from kbsearch.stores.conversations import SQLiteConversationStore
from kbsearch.stores.feedback_sqlite import SQLiteFeedbackStore
from kbsearch.stores.sqlite import Database

ROW_BYTES = 20_000  # five pages a row
SCHEMA = (("CREATE TABLE rows (n INTEGER PRIMARY KEY, payload BLOB NOT NULL)",),)


class DemoStoreError(StoreError):
    """The error of the demo store these tests open."""


def demo(path: Path, every: float | None) -> Database:
    return Database(path, SCHEMA, "demo store", DemoStoreError, checkpoint_every=every)


def write_rows(db: Database, count: int, start: int = 0) -> None:
    """Write ``count`` rows, each in a transaction of its own (as searches are logged)."""
    for n in range(start, start + count):
        with db.transaction("write a row") as conn:
            conn.execute("INSERT INTO rows VALUES (?, ?)", (n, bytes(ROW_BYTES)))


def wal_frames(path: Path) -> int:
    """The frames in the file's WAL now (a checkpoint from a connection of our own)."""
    conn = sqlite3.connect(path)
    try:
        return checkpoints.checkpoint(conn)[1]
    finally:
        conn.close()


def rows_in_database_file(path: Path, tmp_path: Path) -> int:
    """Rows in the database file alone, without its WAL: what checkpoints copied there."""
    copy = tmp_path / "copy" / path.name
    copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(path, copy)
    conn = sqlite3.connect(copy)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'rows'").fetchall():
            return 0  # not even the table is there yet
        return conn.execute("SELECT count(*) FROM rows").fetchone()[0]
    finally:
        conn.close()
        shutil.rmtree(copy.parent)


class Owner:
    """Something a checkpointer can hold a weak reference to."""


def checkpoint_threads(name: str) -> list[threading.Thread]:
    """The checkpoint threads of files called ``name``."""
    return [t for t in threading.enumerate() if t.name == f"kbsearch-checkpoint-{name}"]


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_writers_leave_the_checkpoints_to_the_thread(tmp_path):
    # 300 rows of five pages: 1,500 pages, past SQLite's own checkpoint at 1,000
    own = demo(tmp_path / "own.db", every=None)
    write_rows(own, 300)
    background = demo(tmp_path / "background.db", every=3600.0)  # never within the test
    write_rows(background, 300)
    assert wal_frames(tmp_path / "own.db") < 1_000  # a writer checkpointed and restarted it
    assert wal_frames(tmp_path / "background.db") >= 1_500  # no writer did
    with background.connection("read the pragma") as conn:
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == FALLBACK_PAGES
    with own.connection("read the pragma") as conn:
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1_000
    own.close()
    background.close()


def test_the_thread_copies_the_writes_into_the_database_file(tmp_path):
    path = tmp_path / "demo.db"
    slow = demo(path, every=3600.0)
    write_rows(slow, 20)
    assert rows_in_database_file(path, tmp_path) == 0  # all of it still in the WAL
    slow.close()  # closing the last connection checkpoints: 20 rows in the file
    db = demo(path, every=0.05)
    write_rows(db, 20, start=20)
    assert wait_for(lambda: rows_in_database_file(path, tmp_path) == 40)
    db.close()


def test_close_stops_the_thread_and_a_write_after_reopening_starts_one(tmp_path):
    db = demo(tmp_path / "closing.db", every=0.05)
    assert not checkpoint_threads("closing.db")  # nothing starts before the first write
    write_rows(db, 1)
    assert len(checkpoint_threads("closing.db")) == 1
    db.close()
    assert not checkpoint_threads("closing.db")
    write_rows(db, 1, start=1)  # reopens (reopen=True) with a checkpointer of its own
    assert len(checkpoint_threads("closing.db")) == 1
    db.close()
    assert not checkpoint_threads("closing.db")


def test_a_forked_process_starts_a_thread_of_its_own(tmp_path, monkeypatch):
    db = demo(tmp_path / "forked.db", every=0.05)
    write_rows(db, 1)
    checkpointer = db._checkpointer
    assert checkpointer is not None and checkpointer.running
    monkeypatch.setattr(checkpoints.os, "getpid", lambda: -1)  # as seen from a child
    assert not checkpointer.running  # the parent's thread is not this process's
    write_rows(db, 1, start=1)
    assert checkpointer.running and len(checkpoint_threads("forked.db")) == 2
    db.close()
    monkeypatch.undo()
    for thread in checkpoint_threads("forked.db"):  # the "parent's" thread, no longer referenced
        thread.join(5)
    assert not checkpoint_threads("forked.db")


def test_the_thread_ends_with_its_owner_or_its_file(tmp_path):
    path = tmp_path / "demo.db"
    write_rows(demo(path, every=None), 1)
    owner = Owner()
    checkpointer = BackgroundCheckpointer(path, owner, interval=0.02)
    checkpointer.ensure_running()
    assert checkpointer.running
    del owner
    gc.collect()
    assert wait_for(lambda: not checkpointer.running)

    keep = Owner()
    other = BackgroundCheckpointer(path, keep, interval=0.02)
    other.ensure_running()
    for name in ("demo.db", "demo.db-wal", "demo.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    assert wait_for(lambda: not other.running)
    assert not path.exists()  # the thread never creates the file it checkpoints
    other.stop()
    other.ensure_running()
    assert not other.running  # a stopped checkpointer does not start again


def test_a_failing_checkpoint_is_logged_once_and_tried_again(tmp_path, monkeypatch, caplog):
    calls = []
    real = checkpoints.checkpoint

    def flaky(conn):
        calls.append(time.monotonic())
        if len(calls) <= 3:
            raise sqlite3.OperationalError("disk I/O error")
        return real(conn)

    monkeypatch.setattr(checkpoints, "checkpoint", flaky)
    path = tmp_path / "demo.db"
    db = demo(path, every=0.02)
    with caplog.at_level(logging.WARNING, logger="kbsearch.stores.checkpoints"):
        write_rows(db, 5)
        assert wait_for(lambda: len(calls) >= 5)
        assert db._checkpointer is not None and db._checkpointer.running
        db.close()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "cannot checkpoint" in warnings[0] and "demo.db" in warnings[0]
    assert "disk I/O error" in warnings[0]
    assert rows_in_database_file(path, tmp_path) == 5


@pytest.mark.parametrize("open_store", [
    lambda path: SQLiteFeedbackStore(path),
    lambda path: SQLiteConversationStore(path, idle_seconds=60.0),
])
def test_the_stores_written_on_every_request_checkpoint_in_the_background(
        tmp_path, open_store):
    store = open_store(tmp_path / "store.sqlite3")
    with store._db.connection("read the pragma") as conn:
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == FALLBACK_PAGES
    assert store._db._checkpointer is not None
    assert store._db._checkpointer.interval == checkpoints.CHECKPOINT_INTERVAL_S
    store.close()
