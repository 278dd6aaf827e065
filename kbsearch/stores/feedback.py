"""Durable store of answered searches and the feedback clients send about them.

Every search the service answers is logged as a ``SearchLog``: the query, its embedding, and
the ranked list that was shown with each result's feature vector. Feedback events refer to a
logged search by its ``search_id`` and to one of the articles shown in it. Training reads both
back, ordered by time.

``FeedbackStore`` is the interface; ``SQLiteFeedbackStore`` keeps everything in one SQLite
file (WAL journal, so readers never block the writer)::

    searches   one row per search; feature_names as JSON, query_vector as float16 bytes
    shown      one row per result shown; features as float32 bytes
    events     one row per feedback event; (search_id, article_id, event) is unique

Arrays are stored as little-endian raw bytes (``numpy.tobytes``), never pickled. The schema is
versioned with ``PRAGMA user_version``: ``MIGRATIONS[i]`` takes a database from version ``i``
to ``i + 1``, and all pending migrations run in one transaction.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from numbers import Integral, Real
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from kbsearch.errors import (
    DuplicateFeedbackError,
    FeedbackError,
    FeedbackStoreError,
    UnknownSearchError,
)

EVENTS: tuple[str, ...] = ("impression", "click", "helpful", "not_helpful", "resolved", "escalated")
CHANNELS: tuple[str, ...] = ("api", "faq", "bot", "agent")

MIGRATIONS: tuple[tuple[str, ...], ...] = (
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
)
SCHEMA_VERSION: int = len(MIGRATIONS)

_VECTOR_DTYPE = np.dtype("<f2")
_FEATURE_DTYPE = np.dtype("<f4")
_VECTOR_MAX = float(np.finfo(_VECTOR_DTYPE).max)
_FEATURE_MAX = float(np.finfo(_FEATURE_DTYPE).max)
_PAGE = 1000
_SEARCH_COLUMNS = (
    "search_id, created, query, language, channel, client, index_version, model_version, "
    "feature_names, query_vector"
)
_SHOWN_COLUMNS = "search_id, position, article_id, probability, features"


@dataclass(frozen=True)
class ShownResult:
    """One result as it was shown: article, 1-based position, probability and features."""

    article_id: str
    position: int
    probability: float
    features: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class SearchLog:
    """One answered search: the query, its embedding and the ranked results it showed.

    ``query_vector`` is stored as float16 and comes back as float32; ``features`` are stored
    as float32, so values computed in float32 come back exactly.
    """

    search_id: str
    created: float
    query: str
    language: str | None
    channel: str
    client: str
    index_version: str
    model_version: str
    feature_names: tuple[str, ...]
    query_vector: np.ndarray
    results: tuple[ShownResult, ...]

    def __eq__(self, other: object) -> bool:
        """Return whether every field is equal, the query vectors element by element."""
        if not isinstance(other, SearchLog):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name))
            if f.name == "query_vector"
            else getattr(self, f.name) == getattr(other, f.name)
            for f in fields(self)
        )

    __hash__ = None  # type: ignore[assignment]  # holds an array


@dataclass(frozen=True)
class FeedbackEvent:
    """A client's feedback on one article shown in a logged search.

    ``position`` None means the position the article was shown at; ``created`` 0 means now.
    """

    search_id: str
    article_id: str
    event: str
    position: int | None
    channel: str
    client: str = ""
    created: float = 0.0


@runtime_checkable
class FeedbackStore(Protocol):
    """Where searches and feedback events are kept; training reads them back in time order."""

    def log_search(self, search: SearchLog) -> None:
        """Store one search; raise FeedbackError if it is invalid or already logged."""
        ...

    def add_event(self, event: FeedbackEvent) -> FeedbackEvent:
        """Store one event and return it as stored; raise FeedbackError if it is invalid."""
        ...

    def get_search(self, search_id: str) -> SearchLog | None:
        """Return the logged search, or None when it was never logged."""
        ...

    def searches(
        self, since: float | None = None, until: float | None = None
    ) -> Iterator[SearchLog]:
        """Yield searches with since <= created < until, by created, then search_id."""
        ...

    def events(
        self, since: float | None = None, until: float | None = None
    ) -> Iterator[FeedbackEvent]:
        """Yield events with since <= created < until, by created, then insertion order."""
        ...

    def counts(self) -> dict[str, int]:
        """Return the number of searches, of events, and of events of each type."""
        ...

    def close(self) -> None:
        """Release the store's resources; the store cannot be used afterwards."""
        ...


def _as_floats(values: object, parameter: str, what: str) -> np.ndarray:
    """Return values as a float64 array; raise FeedbackError if they are not numbers."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FeedbackError(parameter, f"{what} must be numbers: {exc}") from None


def _within(values: np.ndarray, limit: float) -> np.ndarray:
    """Return, per row of values (or for a 1-D array), whether all are finite and within limit."""
    return (np.abs(values) <= limit).all(axis=-1)


def _check_text(value: object, parameter: str, what: str, empty: bool = True) -> str:
    """Return value if it is a string (non-empty unless empty is True); else raise FeedbackError."""
    if not isinstance(value, str) or (not empty and not value):
        raise FeedbackError(parameter, f"{what} must be a {'' if empty else 'non-empty '}string")
    return value


def _check_channel(channel: object) -> str:
    """Return channel if it is one of CHANNELS; else raise FeedbackError."""
    if channel not in CHANNELS:
        raise FeedbackError(
            "channel", f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}"
        )
    return str(channel)


def _check_position(position: object, what: str) -> int:
    """Return position as an int if it is an integer of at least 1; else raise FeedbackError."""
    if isinstance(position, bool) or not isinstance(position, Integral) or position < 1:
        raise FeedbackError(
            "position", f"{what} must be an integer of at least 1, not {position!r}"
        )
    return int(position)


def _check_time(created: object, what: str) -> float:
    """Return created as a float if it is a finite, non-negative time; else raise FeedbackError."""
    if isinstance(created, bool) or not isinstance(created, Real):
        raise FeedbackError("created", f"{what} must be unix seconds, not {created!r}")
    if not math.isfinite(created) or created < 0:
        raise FeedbackError("created", f"{what} must be finite unix seconds >= 0, not {created!r}")
    return float(created)


def _search_rows(search: SearchLog) -> tuple[tuple, list[tuple]]:
    """Return the searches row and the shown rows of a search; raise FeedbackError if invalid."""
    search_id = _check_text(search.search_id, "search_id", "search_id", empty=False)
    where = f"search {search_id!r}"
    names = tuple(search.feature_names)
    for name in names:
        _check_text(name, "feature_names", f"feature names of {where}")
    vector = _as_floats(search.query_vector, "query_vector", where)
    if vector.ndim != 1:
        raise FeedbackError("query_vector", f"{where}: must be 1-D, has shape {vector.shape}")
    if not _within(vector, _VECTOR_MAX):
        raise FeedbackError(
            "query_vector", f"{where}: values must be finite and within ±{_VECTOR_MAX:g} "
            "(stored as float16)",
        )
    row = (
        search_id,
        _check_time(search.created, where),
        _check_text(search.query, "query", where),
        None if search.language is None else _check_text(search.language, "language", where),
        _check_channel(search.channel),
        _check_text(search.client, "client", where),
        _check_text(search.index_version, "index_version", where),
        _check_text(search.model_version, "model_version", where),
        json.dumps(names, ensure_ascii=False),
        vector.astype(_VECTOR_DTYPE).tobytes(),
    )
    results = tuple(search.results)
    shown: list[tuple] = []
    articles: set[str] = set()
    positions: set[int] = set()
    for result in results:
        article_id = _check_text(result.article_id, "article_id", where, empty=False)
        what = f"result {article_id!r} of {where}"
        if article_id in articles:
            raise FeedbackError("article_id", f"{what} is listed twice")
        position = _check_position(result.position, what)
        if position in positions:
            raise FeedbackError("position", f"{what} repeats position {position}")
        probability = result.probability
        if (
            isinstance(probability, bool)
            or not isinstance(probability, Real)
            or not math.isfinite(probability)
        ):
            raise FeedbackError("probability", f"{what} must be a finite number")
        if len(result.features) != len(names):
            raise FeedbackError(
                "features",
                f"{what} has {len(result.features)} features, feature_names has {len(names)}",
            )
        articles.add(article_id)
        positions.add(position)
        shown.append((search_id, position, article_id, float(probability)))
    if not results:
        return row, []
    matrix = _as_floats([r.features for r in results], "features", where)
    fine = _within(matrix, _FEATURE_MAX)
    if not fine.all():
        bad = results[int(np.argmin(fine))].article_id
        raise FeedbackError(
            "features", f"result {bad!r} of {where}: values must be finite and within "
            f"±{_FEATURE_MAX:g} (stored as float32)",
        )
    blobs = matrix.astype(_FEATURE_DTYPE)
    return row, [(*head, blob.tobytes()) for head, blob in zip(shown, blobs, strict=True)]


def _check_event(event: FeedbackEvent) -> None:
    """Check the fields of an event that need no database; raise FeedbackError if one is bad."""
    if event.event not in EVENTS:
        raise FeedbackError(
            "event", f"unknown event {event.event!r}; expected one of {', '.join(EVENTS)}"
        )
    _check_channel(event.channel)
    _check_text(event.search_id, "search_id", "search_id", empty=False)
    _check_text(event.article_id, "article_id", "article_id")
    _check_text(event.client, "client", "client")
    if event.position is not None:
        _check_position(event.position, "position")
    _check_time(event.created, "created")


def _search_from_row(
    row: Sequence, names: tuple[str, ...], shown: list[ShownResult]
) -> SearchLog:
    """Return the SearchLog of a searches row, its decoded feature names and shown results."""
    return SearchLog(
        search_id=row[0], created=row[1], query=row[2], language=row[3], channel=row[4],
        client=row[5], index_version=row[6], model_version=row[7], feature_names=names,
        query_vector=np.frombuffer(row[9], dtype=_VECTOR_DTYPE).astype(np.float32),
        results=tuple(shown),
    )


def _shown_results(rows: Sequence[Sequence]) -> list[ShownResult]:
    """Return the ShownResults of shown rows (search_id, position, article, probability, blob)."""
    if not rows:
        return []
    widths = {len(row[4]) // _FEATURE_DTYPE.itemsize for row in rows}
    values = np.frombuffer(b"".join(row[4] for row in rows), dtype=_FEATURE_DTYPE)
    if len(widths) == 1:
        features = list(map(tuple, values.reshape(len(rows), widths.pop()).tolist()))
    else:
        flat = values.tolist()
        features, start = [], 0
        for row in rows:
            end = start + len(row[4]) // _FEATURE_DTYPE.itemsize
            features.append(tuple(flat[start:end]))
            start = end
    return [
        ShownResult(row[2], row[1], row[3], feature)
        for row, feature in zip(rows, features, strict=True)
    ]


def _window(
    since: float | None, until: float | None, key: str, after: tuple | None
) -> tuple[str, list]:
    """Return a WHERE clause and its parameters for since <= created < until, after a key."""
    clauses: list[str] = []
    params: list = []
    if since is not None:
        clauses.append("created >= ?")
        params.append(float(since))
    if until is not None:
        clauses.append("created < ?")
        params.append(float(until))
    if after is not None:
        clauses.append(f"(created, {key}) > (?, ?)")
        params.extend(after)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Apply the pending MIGRATIONS in one transaction and return the schema version.

    Raises FeedbackStoreError if the database's version is newer than MIGRATIONS know;
    a failing migration rolls back every migration of this call.
    """
    migrations = MIGRATIONS
    known = len(migrations)

    def version() -> int:
        """Return the database's schema version; raise FeedbackStoreError if too new."""
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > known:
            raise FeedbackStoreError(
                f"feedback store {path} has schema version {found}, newer than version {known} "
                "that this kbsearch knows; upgrade kbsearch or use another file"
            )
        return found

    if version() == known:
        return known
    conn.execute("BEGIN IMMEDIATE")
    try:
        for number in range(version() + 1, known + 1):
            for statement in migrations[number - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number:d}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return known


def _connect(path: Path) -> sqlite3.Connection:
    """Open, configure and migrate the database; raise FeedbackStoreError if it cannot."""
    try:
        conn = sqlite3.connect(
            str(path), timeout=5.0, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise FeedbackStoreError(f"cannot open feedback store {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn, path)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.Error):
            raise FeedbackStoreError(f"cannot open feedback store {path}: {exc}") from exc
        raise
    return conn


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
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FeedbackStoreError(
                f"cannot create the folder of feedback store {self.path}: {exc}"
            ) from exc
        self._conn: sqlite3.Connection | None = _connect(self.path)

    def __enter__(self) -> SQLiteFeedbackStore:
        """Return the store itself."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the store."""
        self.close()

    def _error(self, exc: sqlite3.Error) -> FeedbackStoreError:
        """Return the FeedbackStoreError reporting a database failure."""
        return FeedbackStoreError(f"feedback store {self.path}: {exc}")

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """Hold the connection; raise FeedbackStoreError if closed or the database fails."""
        with self._lock:
            if self._conn is None:
                raise FeedbackStoreError(f"feedback store {self.path} is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """Hold the connection in a write transaction, committed unless the block raises."""
        with self._reading() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def log_search(self, search: SearchLog) -> None:
        """Store one search; raise FeedbackError if it is invalid or its search_id is taken."""
        self.log_searches((search,))

    def log_searches(self, searches: Iterable[SearchLog]) -> int:
        """Store searches in one transaction and return how many; all or none are stored.

        Raises FeedbackError on the first invalid search or search_id already logged.
        """
        prepared = [_search_rows(search) for search in searches]
        with self._writing() as conn:
            for row, shown in prepared:
                try:
                    conn.execute(
                        f"INSERT INTO searches ({_SEARCH_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        row,
                    )
                except sqlite3.IntegrityError as exc:
                    if "UNIQUE" not in str(exc):
                        raise
                    raise FeedbackError(
                        "search_id", f"search {row[0]!r} is already logged"
                    ) from None
                conn.executemany(
                    f"INSERT INTO shown ({_SHOWN_COLUMNS}) VALUES (?, ?, ?, ?, ?)", shown
                )
        return len(prepared)

    def add_event(self, event: FeedbackEvent) -> FeedbackEvent:
        """Store one event and return it with position and created filled in.

        Raises UnknownSearchError if its search was never logged, DuplicateFeedbackError if the
        same event was stored for the same article and search, FeedbackError if it is invalid.
        """
        _check_event(event)
        with self._writing() as conn:
            return _insert_event(conn, event, self._clock())

    def add_events(self, events: Iterable[FeedbackEvent]) -> int:
        """Store events in one transaction and return how many; all or none are stored.

        Raises, as add_event does, on the first event that cannot be stored.
        """
        events = list(events)
        for event in events:
            _check_event(event)
        with self._writing() as conn:
            now = self._clock()
            for event in events:
                _insert_event(conn, event, now)
        return len(events)

    def get_search(self, search_id: str) -> SearchLog | None:
        """Return the logged search, or None when it was never logged."""
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {_SEARCH_COLUMNS} FROM searches WHERE search_id = ?", (search_id,)
            ).fetchone()
            if row is None:
                return None
            shown = conn.execute(
                f"SELECT {_SHOWN_COLUMNS} FROM shown WHERE search_id = ? ORDER BY position",
                (search_id,),
            ).fetchall()
        return _search_from_row(row, tuple(json.loads(row[8])), _shown_results(shown))

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
            with self._reading() as conn:
                rows = conn.execute(
                    f"SELECT {_SEARCH_COLUMNS} FROM searches{where} "
                    f"ORDER BY created, search_id LIMIT {_PAGE}",
                    params,
                ).fetchall()
                marks = ", ".join("?" * len(rows))
                shown_rows = conn.execute(
                    f"SELECT {_SHOWN_COLUMNS} FROM shown WHERE search_id IN ({marks}) "
                    "ORDER BY search_id, position",
                    [row[0] for row in rows],
                ).fetchall() if rows else []
            shown: dict[str, list[ShownResult]] = {}
            for row, result in zip(shown_rows, _shown_results(shown_rows), strict=True):
                shown.setdefault(row[0], []).append(result)
            for row in rows:
                if row[8] not in names:
                    names[row[8]] = tuple(json.loads(row[8]))
                yield _search_from_row(row, names[row[8]], shown.get(row[0], []))
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
            with self._reading() as conn:
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
        with self._reading() as conn:
            searches = conn.execute("SELECT count(*) FROM searches").fetchone()[0]
            by_type = dict(
                conn.execute("SELECT event, count(*) FROM events GROUP BY event").fetchall()
            )
        result = {"searches": searches, "events": sum(by_type.values())}
        result.update({name: by_type.get(name, 0) for name in EVENTS})
        return result

    def close(self) -> None:
        """Close the database connection; later calls raise FeedbackStoreError. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
