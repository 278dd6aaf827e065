"""SQLite plumbing shared by every store: connection, pragmas, lock, migrations and errors.

A store keeps one :class:`Database`: one connection, shared by the store's threads under a
lock. Several connections (other stores, other processes) may use the same file: the WAL
journal lets readers go on while one writes, and the busy timeout makes writers wait their
turn. Every connection gets the same ``PRAGMAS``.

A file's schema is versioned with ``PRAGMA user_version``: ``migrations[i]`` is a list of
SQL statements that takes the database from version ``i`` to ``i + 1``. Opening applies the
pending steps in order, all in one transaction, so a failing step leaves the database at the
version it had. A database newer than the code knows is refused, naming the file.

Every ``sqlite3.Error`` (and the ``OSError`` of creating the file's folder) becomes the
store's named error, a :class:`~kbsearch.errors.StoreError` whose message names the store,
the file and what failed; the original error is chained for the log, never shown to clients.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from kbsearch.errors import StoreError
from kbsearch.stores.checkpoints import FALLBACK_PAGES, BackgroundCheckpointer

TIMEOUT_SECONDS = 5.0
PRAGMAS: tuple[str, ...] = (
    "PRAGMA busy_timeout = 5000",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)

Migration = Sequence[str]


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in a write transaction, committed if it returns, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def user_version(conn: sqlite3.Connection) -> int:
    """Return the schema version recorded in the database (0 for a new file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _execute_waiting(conn: sqlite3.Connection, statement: str) -> None:
    """Execute a statement, retrying while the file is locked, up to TIMEOUT_SECONDS.

    SQLite's busy timeout does not cover every lock: switching a new file to WAL while
    another connection is creating it answers "database is locked" at once.
    """
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        try:
            conn.execute(statement)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def time_window(
    column: str, since: float | None, until: float | None
) -> tuple[list[str], list[float]]:
    """Return the conditions and parameters that keep rows with since <= column < until.

    Either bound may be None (no bound); join the conditions with AND.
    """
    clauses: list[str] = []
    params: list[float] = []
    if since is not None:
        clauses.append(f"{column} >= ?")
        params.append(float(since))
    if until is not None:
        clauses.append(f"{column} < ?")
        params.append(float(until))
    return clauses, params


class Database:
    """One SQLite file of a store: opened and migrated on first use, guarded by a lock.

    ``what`` names the store in messages ("feedback store"); ``error`` is the store's named
    error. After :meth:`close`, a use opens the file again when ``reopen`` is true and raises
    ``error`` saying it is closed otherwise. With ``checkpoint_every`` seconds (a store
    written on every request) the WAL is checkpointed that often on a thread of its own,
    not by whichever write takes it past 1,000 pages (:mod:`kbsearch.stores.checkpoints`).
    """

    def __init__(
        self,
        path: Path | str,
        migrations: Sequence[Migration],
        what: str,
        error: type[StoreError],
        reopen: bool = True,
        checkpoint_every: float | None = None,
    ) -> None:
        """Describe the database; nothing is opened yet (see :meth:`open`)."""
        self.path = Path(path)
        self.migrations = tuple(tuple(step) for step in migrations)
        self.what = what
        self.error = error
        self._reopen = reopen
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._checkpoint_every = checkpoint_every
        self._checkpointer: BackgroundCheckpointer | None = None

    @property
    def version(self) -> int:
        """Return the schema version the migrations lead to."""
        return len(self.migrations)

    def open(self) -> None:
        """Open and migrate the file now rather than on first use; raise the store's error."""
        with self._lock:
            self._connection()

    @contextmanager
    def connection(self, action: str) -> Iterator[sqlite3.Connection]:
        """Hold the connection (autocommit) for one action, e.g. "read searches".

        Raises the store's error if the file cannot be opened or a statement fails; the
        message says ``cannot <action>``.
        """
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise self.error(f"{self.what} {self.path}: cannot {action}: {exc}") from exc

    @contextmanager
    def transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """Hold the connection in a write transaction for one action, as :meth:`connection`."""
        with self.connection(action) as conn, transaction(conn):
            if self._checkpointer is not None:
                self._checkpointer.ensure_running()
            yield conn

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            self._closed = True
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        """Return the open connection, opening it if needed; the caller holds the lock."""
        if self._conn is None:
            if self._closed and not self._reopen:
                raise self.error(f"{self.what} {self.path} is closed")
            self._conn = self._connect()
            if self._checkpoint_every is not None:
                self._checkpointer = BackgroundCheckpointer(self.path, self,
                                                            self._checkpoint_every)
        return self._conn

    def _connect(self) -> sqlite3.Connection:
        """Open the file (and its folder), set the pragmas and migrate; raise the store's error."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.error(
                f"cannot create the folder of {self.what} {self.path}: {exc}"
            ) from exc
        try:
            conn = sqlite3.connect(
                str(self.path), timeout=TIMEOUT_SECONDS, isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self.error(f"cannot open {self.what} {self.path}: {exc}") from exc
        try:
            for pragma in PRAGMAS:
                _execute_waiting(conn, pragma)
            if self._checkpoint_every is not None:
                conn.execute(f"PRAGMA wal_autocheckpoint = {FALLBACK_PAGES:d}")
            self._migrate(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self.error(f"cannot open {self.what} {self.path}: {exc}") from exc
            raise
        return conn

    def _checked_version(self, conn: sqlite3.Connection) -> int:
        """Return the database's schema version; raise the store's error if it is too new."""
        found = user_version(conn)
        if found > self.version:
            raise self.error(
                f"{self.what} {self.path} has schema version {found}, newer than version "
                f"{self.version} that this kbsearch knows; upgrade kbsearch or use another file"
            )
        return found

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Apply the pending migrations in order, in one transaction; raise the store's error.

        The version is read again inside the transaction, so two processes opening a new
        file at once migrate it once.
        """
        if self._checked_version(conn) == self.version:
            return
        with transaction(conn):
            for number in range(self._checked_version(conn) + 1, self.version + 1):
                try:
                    for statement in self.migrations[number - 1]:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number:d}")
                except sqlite3.Error as exc:
                    raise self.error(
                        f"cannot open {self.what} {self.path}: migration to schema version "
                        f"{number} failed: {exc}"
                    ) from exc
