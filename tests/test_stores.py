"""The SQLite plumbing under every store."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from kbsearch.errors import KbsearchError, StoreError
from kbsearch.stores.sqlite import Database, transaction


class DemoStoreError(StoreError):
    """The error of the demo store these tests open."""


def step(number: int) -> tuple[str, ...]:
    """A migration step that records its number in the steps table."""
    return (f"INSERT INTO steps (number) VALUES ({number})",)


CREATE_STEPS = ("CREATE TABLE steps (number INTEGER NOT NULL)",) + step(1)
STEPS = (CREATE_STEPS, step(2), ("ALTER TABLE steps ADD COLUMN note TEXT",) + step(3))


def demo(path: Path, migrations=STEPS, reopen: bool = True) -> Database:
    """A database of the demo store at path with the given migrations."""
    return Database(path, migrations, "demo store", DemoStoreError, reopen=reopen)


def query(path: Path, sql: str) -> list[tuple]:
    """Run one statement on its own connection and return its rows."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def user_version(path: Path) -> int:
    """The schema version recorded in the file."""
    return query(path, "PRAGMA user_version")[0][0]


def schema(path: Path) -> list[tuple]:
    """Every table and index of the file, with the SQL that made it."""
    return query(path, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")


# --- the helper ---------------------------------------------------------------------------

def test_migrations_run_in_order_and_once(tmp_path):
    path = tmp_path / "demo.db"
    db = demo(path)
    db.open()
    db.close()
    assert user_version(path) == db.version == 3
    assert query(path, "SELECT number FROM steps ORDER BY rowid") == [(1,), (2,), (3,)]
    for _ in range(2):
        demo(path).open()
    assert query(path, "SELECT number FROM steps ORDER BY rowid") == [(1,), (2,), (3,)]
    later = demo(path, (*STEPS, step(4)))
    later.open()
    later.close()
    assert user_version(path) == 4
    assert query(path, "SELECT number FROM steps ORDER BY rowid") == [(1,), (2,), (3,), (4,)]


def test_a_new_file_opened_by_many_at_once_is_migrated_once(tmp_path):
    path = tmp_path / "demo.db"
    databases = [demo(path) for _ in range(4)]
    start = threading.Barrier(len(databases))
    errors: list[BaseException] = []

    def open_one(db: Database) -> None:
        start.wait()
        try:
            db.open()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert query(path, "SELECT number FROM steps ORDER BY rowid") == [(1,), (2,), (3,)]


def test_a_newer_database_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "demo.db"
    demo(path).open()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    with pytest.raises(DemoStoreError) as caught:
        demo(path).open()
    message = str(caught.value)
    assert message.startswith(f"demo store {path} has schema version 7")
    assert "newer than version 3" in message and "upgrade kbsearch" in message
    assert user_version(path) == 7


def test_a_failing_migration_leaves_the_database_at_its_old_version(tmp_path):
    path = tmp_path / "demo.db"
    demo(path, STEPS[:1]).open()
    broken = demo(path, (*STEPS[:2], ("CREATE TABLE half (x)", "CREATE TABLE broken (")))
    with pytest.raises(DemoStoreError) as caught:
        broken.open()
    message = str(caught.value)
    assert str(path) in message and "migration to schema version 3 failed" in message
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    assert user_version(path) == 1
    assert query(path, "SELECT number FROM steps") == [(1,)]  # step 2 rolled back too
    assert {row[1] for row in schema(path)} == {"steps"}


def test_each_connection_gets_the_pragmas(tmp_path):
    db = demo(tmp_path / "demo.db")
    with db.connection("read the pragmas") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    db.close()


def test_a_failing_statement_names_the_store_the_file_and_the_action(tmp_path):
    path = tmp_path / "demo.db"
    db = demo(path)
    with pytest.raises(DemoStoreError) as caught:
        with db.connection("count the things") as conn:
            conn.execute("SELECT count(*) FROM things")
    assert str(caught.value) == f"demo store {path}: cannot count the things: no such table: things"
    assert isinstance(caught.value, KbsearchError)
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    with db.connection("count the steps") as conn:  # the store stays usable
        assert conn.execute("SELECT count(*) FROM steps").fetchone()[0] == 3


@pytest.mark.parametrize(("make", "expected"), [
    (lambda path: path.write_bytes(b"this is not a database" * 200), "cannot open demo store"),
    (lambda path: path.mkdir(), "cannot open demo store"),
    (lambda path: path.parent.write_text("a file, not a folder"),
     "cannot create the folder of demo store"),
])
def test_an_unusable_file_raises_the_store_error(tmp_path, make, expected):
    path = tmp_path / "folder" / "demo.db"
    if "folder" not in expected:
        path.parent.mkdir()
    make(path)
    with pytest.raises(DemoStoreError, match=expected) as caught:
        demo(path).open()
    assert str(path) in str(caught.value)


def test_a_transaction_commits_or_rolls_back_as_a_whole(tmp_path):
    path = tmp_path / "demo.db"
    db = demo(path)
    with db.transaction("add steps") as conn:
        conn.execute("INSERT INTO steps (number) VALUES (10)")
        conn.execute("INSERT INTO steps (number) VALUES (11)")
    with pytest.raises(ValueError), db.transaction("add steps") as conn:
        conn.execute("INSERT INTO steps (number) VALUES (12)")
        raise ValueError("changed my mind")
    failing = pytest.raises(DemoStoreError, match="cannot add steps")
    with failing, db.transaction("add steps") as conn:
        conn.execute("INSERT INTO steps (number) VALUES (13)")
        conn.execute("INSERT INTO nowhere VALUES (1)")
    db.close()
    assert query(path, "SELECT number FROM steps WHERE number >= 10") == [(10,), (11,)]


def test_the_transaction_function_works_on_any_connection(tmp_path):
    conn = sqlite3.connect(tmp_path / "plain.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    with pytest.raises(RuntimeError), transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
    assert conn.execute("SELECT x FROM t").fetchall() == [(2,)] and not conn.in_transaction
    conn.close()


def test_after_close_a_database_reopens_or_refuses(tmp_path):
    again = demo(tmp_path / "again.db", reopen=True)
    again.open()
    again.close()
    with again.connection("count the steps") as conn:
        assert conn.execute("SELECT count(*) FROM steps").fetchone()[0] == 3
    again.close()
    once = demo(tmp_path / "once.db", reopen=False)
    once.open()
    once.close()
    once.close()
    with pytest.raises(DemoStoreError, match=r"demo store .*once\.db is closed"):
        with once.connection("count the steps"):
            pass


def test_threads_share_one_database_safely(tmp_path):
    db = demo(tmp_path / "demo.db")

    def write(worker: int) -> None:
        for i in range(50):
            with db.transaction("add a step") as conn:
                conn.execute("INSERT INTO steps (number, note) VALUES (?, ?)", (100 + i, worker))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with db.connection("count the steps") as conn:
        assert conn.execute("SELECT count(*) FROM steps WHERE number >= 100").fetchone()[0] == 200
    db.close()
