"""The SQLite plumbing under every store, and the channels database's schema version."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from kbsearch.errors import (
    CallbackStoreError,
    ConversationStoreError,
    KbsearchError,
    StoreError,
)
from kbsearch.stores import channels_db
from kbsearch.stores.callbacks import CallbackRequest, CallbackStore, SQLiteCallbackStore
from kbsearch.stores.conversations import (
    Conversation,
    ConversationStore,
    Offer,
    SQLiteConversationStore,
    Turn,
)
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


# --- the channels database ----------------------------------------------------------------

# The channels file as kbsearch made it before it had a schema version, word for word.
OLD_CONVERSATIONS = (
    "CREATE TABLE IF NOT EXISTS bot_conversations ("
    " client TEXT NOT NULL, id TEXT NOT NULL, started REAL NOT NULL,"
    " updated REAL NOT NULL, state TEXT NOT NULL, PRIMARY KEY (client, id))",
    "CREATE INDEX IF NOT EXISTS bot_conversations_updated"
    " ON bot_conversations (updated)",
)
OLD_CALLBACKS = ("""CREATE TABLE IF NOT EXISTS callback_requests (
    id INTEGER PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    name TEXT NOT NULL,
    phone TEXT NOT NULL,
    preferred_time TEXT NOT NULL,
    description TEXT NOT NULL,
    language TEXT NOT NULL,
    context TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open'
)""",)
OLD_STATE = (
    '{"turns": [{"at": 100.0, "message": "Router blinkt rot", "terms": ["rout", "blinkt"], '
    '"search_id": "s-1", "offers": [{"article_id": "router-stoerung", "title": "Störung", '
    '"probability": 0.61, "position": 1}]}], "verdicts": [], "handed_off": false}'
)


def old_channels_file(path: Path, conversations: bool = True, callbacks: bool = True) -> None:
    """Write a channels file as the code before schema versions did, with one row per table."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        if conversations:
            for statement in OLD_CONVERSATIONS:
                conn.execute(statement)
            conn.execute("INSERT INTO bot_conversations VALUES (?, ?, ?, ?, ?)",
                         ("client", "c1", 100.0, 100.0, OLD_STATE))
        if callbacks:
            conn.execute(OLD_CALLBACKS[0])
            conn.execute(
                "INSERT INTO callback_requests (reference, created, name, phone, "
                "preferred_time, description, language, context, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ("RR-7KQ2MX", 50.0, "Erika", "0171 2345678", "asap", "Router", "de",
                 "search: router", "done"),
            )
    finally:
        conn.close()


def test_the_first_version_is_the_schema_the_old_code_made(tmp_path):
    old, new = tmp_path / "old.sqlite3", tmp_path / "new.sqlite3"
    old_channels_file(old)
    first = Database(new, channels_db.MIGRATIONS[:1], "channels", StoreError)
    first.open()
    first.close()
    assert schema(new) == schema(old)


@pytest.mark.parametrize(("conversations", "callbacks"), [(True, True), (True, False),
                                                          (False, True)])
@pytest.mark.parametrize("first", ["conversations", "callbacks"])
def test_an_unversioned_channels_file_is_adopted_without_losing_rows(
    tmp_path, conversations, callbacks, first
):
    path = tmp_path / "channels.sqlite3"
    old_channels_file(path, conversations, callbacks)
    assert user_version(path) == 0
    before = {name: query(path, f"SELECT * FROM {name}") for name, kept in
              (("bot_conversations", conversations), ("callback_requests", callbacks)) if kept}
    bot = SQLiteConversationStore(path, idle_seconds=600)
    desk = SQLiteCallbackStore(path)
    if first == "conversations":  # whichever store comes first migrates the file
        talk = bot.get("client", "c1", 200.0)
        listed = desk.recent()
    else:
        listed = desk.recent()
        talk = bot.get("client", "c1", 200.0)
    bot.close()
    desk.close()
    assert user_version(path) == channels_db.SCHEMA_VERSION
    for name, rows in before.items():
        assert query(path, f"SELECT * FROM {name}") == rows
    if conversations:
        assert talk == Conversation("client", "c1", 100.0, 100.0, (Turn(
            100.0, "Router blinkt rot", ("rout", "blinkt"), "s-1",
            (Offer("router-stoerung", "Störung", 0.61, 1),)),))
    else:
        assert talk is None
    if callbacks:
        assert [(s.reference, s.status, s.request.name) for s in listed] == [
            ("RR-7KQ2MX", "done", "Erika")]
    else:
        assert listed == []
    assert {row[1] for row in schema(path)} >= {"bot_conversations", "callback_requests"}


@pytest.mark.parametrize(("open_store", "error"), [
    (lambda path: SQLiteConversationStore(path, idle_seconds=60).purge(0.0),
     ConversationStoreError),
    (lambda path: SQLiteCallbackStore(path).recent(), CallbackStoreError),
])
def test_a_newer_channels_file_is_refused_by_both_stores(tmp_path, open_store, error):
    path = tmp_path / "channels.sqlite3"
    SQLiteCallbackStore(path).recent()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {channels_db.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(error) as caught:
        open_store(path)
    newest = channels_db.SCHEMA_VERSION
    assert str(path) in str(caught.value) and f"newer than version {newest}" in str(caught.value)


def test_the_stores_implement_their_protocols(tmp_path):
    bot = SQLiteConversationStore(tmp_path / "channels.sqlite3", idle_seconds=60)
    desk = SQLiteCallbackStore(tmp_path / "channels.sqlite3")
    assert isinstance(bot, ConversationStore) and isinstance(desk, CallbackStore)
    assert not (tmp_path / "channels.sqlite3").exists()  # opened on first use only


def test_a_store_failure_reaches_api_clients_without_details(tmp_path):
    from kbsearch.api import create_app
    from kbsearch.stores.keys import KeyStore

    from .conftest import make_settings

    settings = make_settings(tmp_path)
    key = KeyStore(settings.keys_file).create("agent", "test agent")[1]
    SQLiteCallbackStore(settings.channels_db).add(
        CallbackRequest("A", "0171 2345678", "asap", "B"))
    conn = sqlite3.connect(settings.channels_db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    client = create_app({"TESTING": True}, settings=settings).test_client()
    response = client.get("/api/v1/callbacks", headers={"X-API-Key": key})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "callbacks_unavailable"
    assert str(settings.channels_db) not in response.text and "Traceback" not in response.text
