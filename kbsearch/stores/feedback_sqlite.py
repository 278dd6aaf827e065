"""The search and feedback log in one SQLite file: ``SQLiteFeedbackStore``.

The records, their checks and their stored form are in :mod:`kbsearch.stores.feedback`;
this module holds the schema and the queries (``KBSEARCH_FEEDBACK_DB``, WAL journal, so
readers never block the writer)::

    searches   one row per search; feature_names as JSON, query_vector as float16 bytes
    shown      one row per result shown; features as float32 bytes
    events     one row per feedback event; (search_id, article_id, event) is unique

The schema is versioned with ``PRAGMA user_version``: ``MIGRATIONS[i]`` takes a database from
version ``i`` to ``i + 1``, and all pending migrations run in one transaction
(:mod:`kbsearch.stores.sqlite`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from kbsearch.errors import (
    DuplicateFeedbackError,
    FeedbackError,
    FeedbackStoreError,
    UnknownSearchError,
)
from kbsearch.stores.checkpoints import CHECKPOINT_INTERVAL_S
from kbsearch.stores.feedback import (
    EVENTS,
    SEARCH_COLUMNS,
    SHOWN_COLUMNS,
    FeedbackEvent,
    SearchLog,
    ShownResult,
    check_event,
    search_from_row,
    search_rows,
    shown_results,
)
from kbsearch.stores.sqlite import Database, Migration, time_window

MIGRATIONS: tuple[Migration, ...] = (
    (
        """CREATE TABLE searches (
            search_id TEXT PRIMARY KEY NOT NULL,
            created REAL NOT NULL,
            query TEXT NOT NULL,
            language TEXT,
            channel TEXT NOT NULL,
            client TEXT NOT NULL,
            index_version TEXT NOT NULL,
            model_version TEXT NOT NULL,
            feature_names TEXT NOT NULL,
            query_vector BLOB NOT NULL
        )""",
        "CREATE INDEX searches_created ON searches (created, search_id)",
        """CREATE TABLE shown (
            search_id TEXT NOT NULL REFERENCES searches (search_id) ON DELETE CASCADE,
            position INTEGER NOT NULL CHECK (position >= 1),
            article_id TEXT NOT NULL,
            probability REAL NOT NULL,
            features BLOB NOT NULL,
            PRIMARY KEY (search_id, position),
            UNIQUE (search_id, article_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            search_id TEXT NOT NULL,
            article_id TEXT NOT NULL,
            event TEXT NOT NULL,
            position INTEGER NOT NULL CHECK (position >= 1),
            channel TEXT NOT NULL,
            client TEXT NOT NULL,
            created REAL NOT NULL,
            UNIQUE (search_id, article_id, event),
            FOREIGN KEY (search_id, article_id)
                REFERENCES shown (search_id, article_id) ON DELETE CASCADE
        )""",
        "CREATE INDEX events_created ON events (created)",
    ),
    # 2: mark searches that no person typed, so that training can leave them out
    ("ALTER TABLE searches ADD COLUMN synthetic INTEGER NOT NULL DEFAULT 0",),
    # 3: the API key that searched (feedback is accepted only from it); "" without a key
    ("ALTER TABLE searches ADD COLUMN owner TEXT NOT NULL DEFAULT ''",),
)
SCHEMA_VERSION: int = len(MIGRATIONS)
_PAGE = 1000


def _window(
    since: float | None, until: float | None, key: str, after: tuple | None
) -> tuple[str, list]:
    """Return a WHERE clause and its parameters for since <= created < until, after a key."""
    clauses, bounds = time_window("created", since, until)
    params: list = list(bounds)
    if after is not None:
        clauses.append(f"(created, {key}) > (?, ?)")
        params.extend(after)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _insert_event(conn: sqlite3.Connection, event: FeedbackEvent, now: float) -> FeedbackEvent:
    """Insert a checked event and return it as stored; raise FeedbackError if it cannot be.

    Raises UnknownSearchError, DuplicateFeedbackError, or FeedbackError for an article not
    shown in the search or shown at another position.
    """
    found = conn.execute(
        "SELECT position FROM shown WHERE search_id = ? AND article_id = ?",
        (event.search_id, event.article_id),
    ).fetchone()
    if found is None:
        known = conn.execute(
            "SELECT 1 FROM searches WHERE search_id = ?", (event.search_id,)
        ).fetchone()
        if known is None:
            raise UnknownSearchError("search_id", f"no search {event.search_id!r} was logged")
        raise FeedbackError(
            "article_id",
            f"article {event.article_id!r} was not among the results shown for search "
            f"{event.search_id!r}",
        )
    logged = found[0]
    if event.position is not None and event.position != logged:
        raise FeedbackError(
            "position",
            f"article {event.article_id!r} was shown at position {logged} in search "
            f"{event.search_id!r}, not at {event.position}",
        )
    stored = FeedbackEvent(
        event.search_id, event.article_id, event.event, logged, event.channel, event.client,
        float(event.created or now),
    )
    try:
        conn.execute(
            "INSERT INTO events (search_id, article_id, event, position, channel, client, "
            "created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (stored.search_id, stored.article_id, stored.event, stored.position,
             stored.channel, stored.client, stored.created),
        )
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" not in str(exc):
            raise
        raise DuplicateFeedbackError(
            "event",
            f"'{event.event}' for article {event.article_id!r} in search "
            f"{event.search_id!r} is already stored",
        ) from None
    return stored


class SQLiteFeedbackStore:
    """A FeedbackStore in one SQLite file, safe to share between threads and processes.

    One connection serves all threads of a process, guarded by a lock; several processes
    may open the same file (SQLite's WAL journal and busy timeout serialise their writes).
    """

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        """Open (creating if needed) the store at path; raise FeedbackStoreError if it cannot."""
        self.path = Path(path)
        self._clock = clock
        self._db = Database(self.path, MIGRATIONS, "feedback store", FeedbackStoreError,
                            reopen=False, checkpoint_every=CHECKPOINT_INTERVAL_S)
        self._db.open()

    def __enter__(self) -> SQLiteFeedbackStore:
        """Return the store itself."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the store."""
        self.close()

    def log_search(self, search: SearchLog) -> None:
        """Store one search; raise FeedbackError if it is invalid or its search_id is taken."""
        self.log_searches((search,))

    def log_searches(self, searches: Iterable[SearchLog]) -> int:
        """Store searches in one transaction and return how many; all or none are stored.

        Raises FeedbackError on the first invalid search or search_id already logged.
        """
        prepared = [search_rows(search) for search in searches]
        with self._db.transaction("store searches") as conn:
            for row, shown in prepared:
                try:
                    conn.execute(
                        f"INSERT INTO searches ({SEARCH_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        row,
                    )
                except sqlite3.IntegrityError as exc:
                    if "UNIQUE" not in str(exc):
                        raise
                    raise FeedbackError(
                        "search_id", f"search {row[0]!r} is already logged"
                    ) from None
                conn.executemany(
                    f"INSERT INTO shown ({SHOWN_COLUMNS}) VALUES (?, ?, ?, ?, ?)", shown
                )
        return len(prepared)

    def add_event(self, event: FeedbackEvent) -> FeedbackEvent:
        """Store one event and return it with position and created filled in.

        Raises UnknownSearchError if its search was never logged, DuplicateFeedbackError if the
        same event was stored for the same article and search, FeedbackError if it is invalid.
        """
        check_event(event)
        with self._db.transaction("store a feedback event") as conn:
            return _insert_event(conn, event, self._clock())

    def add_events(self, events: Iterable[FeedbackEvent]) -> int:
        """Store events in one transaction and return how many; all or none are stored.

        Raises, as add_event does, on the first event that cannot be stored.
        """
        events = list(events)
        for event in events:
            check_event(event)
        with self._db.transaction("store feedback events") as conn:
            now = self._clock()
            for event in events:
                _insert_event(conn, event, now)
        return len(events)

    def get_search(self, search_id: str) -> SearchLog | None:
        """Return the logged search, or None when it was never logged."""
        with self._db.connection("read a search") as conn:
            row = conn.execute(
                f"SELECT {SEARCH_COLUMNS} FROM searches WHERE search_id = ?", (search_id,)
            ).fetchone()
            if row is None:
                return None
            shown = conn.execute(
                f"SELECT {SHOWN_COLUMNS} FROM shown WHERE search_id = ? ORDER BY position",
                (search_id,),
            ).fetchall()
        return search_from_row(row, tuple(json.loads(row[8])), shown_results(shown))

    def searches(
        self, since: float | None = None, until: float | None = None
    ) -> Iterator[SearchLog]:
        """Yield searches with since <= created < until, by created, then search_id.

        Rows are read a page at a time; the store stays usable while the iterator is open.
        """
        names: dict[str, tuple[str, ...]] = {}
        after: tuple | None = None
        while True:
            where, params = _window(since, until, "search_id", after)
            with self._db.connection("read searches") as conn:
                rows = conn.execute(
                    f"SELECT {SEARCH_COLUMNS} FROM searches{where} "
                    f"ORDER BY created, search_id LIMIT {_PAGE}",
                    params,
                ).fetchall()
                marks = ", ".join("?" * len(rows))
                shown_rows = conn.execute(
                    f"SELECT {SHOWN_COLUMNS} FROM shown WHERE search_id IN ({marks}) "
                    "ORDER BY search_id, position",
                    [row[0] for row in rows],
                ).fetchall() if rows else []
            shown: dict[str, list[ShownResult]] = {}
            for row, result in zip(shown_rows, shown_results(shown_rows), strict=True):
                shown.setdefault(row[0], []).append(result)
            for row in rows:
                if row[8] not in names:
                    names[row[8]] = tuple(json.loads(row[8]))
                yield search_from_row(row, names[row[8]], shown.get(row[0], []))
            if len(rows) < _PAGE:
                return
            after = (rows[-1][1], rows[-1][0])

    def events(
        self, since: float | None = None, until: float | None = None
    ) -> Iterator[FeedbackEvent]:
        """Yield events with since <= created < until, by created, then insertion order.

        Rows are read a page at a time; the store stays usable while the iterator is open.
        """
        after: tuple | None = None
        while True:
            where, params = _window(since, until, "id", after)
            with self._db.connection("read feedback events") as conn:
                rows = conn.execute(
                    "SELECT id, search_id, article_id, event, position, channel, client, created "
                    f"FROM events{where} ORDER BY created, id LIMIT {_PAGE}",
                    params,
                ).fetchall()
            for row in rows:
                yield FeedbackEvent(
                    search_id=row[1], article_id=row[2], event=row[3], position=row[4],
                    channel=row[5], client=row[6], created=row[7],
                )
            if len(rows) < _PAGE:
                return
            after = (rows[-1][7], rows[-1][0])

    def counts(self) -> dict[str, int]:
        """Return the number of searches, of events, and of events of each type (0 if none)."""
        with self._db.connection("count searches and events") as conn:
            searches = conn.execute("SELECT count(*) FROM searches").fetchone()[0]
            by_type = dict(
                conn.execute("SELECT event, count(*) FROM events GROUP BY event").fetchall()
            )
        result = {"searches": searches, "events": sum(by_type.values())}
        result.update({name: by_type.get(name, 0) for name in EVENTS})
        return result

    def purge(self, before: float) -> int:
        """Delete the searches made before a time, with their results and events; count them."""
        with self._db.transaction("delete old searches") as conn:
            return conn.execute("DELETE FROM searches WHERE created < ?", (before,)).rowcount

    def forget(self, text: str) -> int:
        """Delete the searches whose query contains a text (any case), with their events."""
        wanted = text.casefold()
        with self._db.transaction("forget searches") as conn:
            ids = [(row[0],) for row in conn.execute("SELECT search_id, query FROM searches")
                   if wanted in row[1].casefold()]
            conn.executemany("DELETE FROM searches WHERE search_id = ?", ids)
        return len(ids)

    def close(self) -> None:
        """Close the database connection; later calls raise FeedbackStoreError. Idempotent."""
        self._db.close()
