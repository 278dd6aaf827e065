"""The chatbot's durable record: which conversations started and which went to a human.

Conversations themselves are deleted once idle (:mod:`kbsearch.stores.conversations`), so
the analytics could not count them or their hand-offs afterwards. The bot therefore writes
one ``BotStart`` per conversation started and one ``BotHandoff`` per conversation the first
time a hand-off is recommended, into two tables of the channels database
(``KBSEARCH_CHANNELS_DB``, schema version 2 in :mod:`kbsearch.stores.channels_db`)::

    bot_starts     at, client, language, search_id of the first turn
    bot_handoffs   at, client, language, reason codes, search_id of the last turn

No row holds anything a person typed: the client is the pseudonymous id searches are logged
with, the reasons are codes (``human_requested``, ``low_probability`` ...), the search id is
a random number. Rows are purged with the searches (``KBSEARCH_RETENTION_SEARCH_DAYS``);
there is nothing in them for ``kbsearch forget`` to find, so the store has no ``forget``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from kbsearch.errors import ConversationStoreError
from kbsearch.stores.channels_db import channels_database
from kbsearch.stores.sqlite import time_window


@dataclass(frozen=True)
class BotStart:
    """A chatbot conversation that started: when, whose, in which language, first search."""

    at: float
    client: str
    language: str | None
    search_id: str | None


@dataclass(frozen=True)
class BotHandoff:
    """A chatbot conversation handed to a human: when, whose, why (codes), last search."""

    at: float
    client: str
    language: str | None
    reasons: tuple[str, ...]
    search_id: str | None


@runtime_checkable
class HandoffStore(Protocol):
    """Where the bot records conversations started and handed off, for the analytics."""

    def record_start(self, start: BotStart) -> None:
        """Store that a conversation started."""
        ...

    def record_handoff(self, handoff: BotHandoff) -> None:
        """Store that a conversation was handed to a human."""
        ...

    def starts(self, since: float | None = None, until: float | None = None
               ) -> Iterator[BotStart]:
        """Yield the starts with since <= at < until, oldest first."""
        ...

    def handoffs(self, since: float | None = None, until: float | None = None
                 ) -> Iterator[BotHandoff]:
        """Yield the hand-offs with since <= at < until, oldest first."""
        ...

    def purge(self, before: float) -> int:
        """Delete the starts and hand-offs recorded before a time; return how many."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


def _window(since: float | None, until: float | None) -> tuple[str, list[float]]:
    """Return a WHERE clause and its parameters for since <= at < until."""
    clauses, params = time_window("at", since, until)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class SQLiteHandoffStore:
    """A HandoffStore in the ``bot_starts`` and ``bot_handoffs`` tables of the channels database.

    The file is opened on first use; one connection serves all threads, guarded by a lock.
    Failures raise ConversationStoreError, as the bot's other store does.
    """

    def __init__(self, path: Path | str) -> None:
        """Remember where the database lives; nothing is opened yet."""
        self.path = Path(path)
        self._db = channels_database(self.path, "bot hand-off log", ConversationStoreError)

    def record_start(self, start: BotStart) -> None:
        """Store that a conversation started."""
        with self._db.connection("record a conversation start") as db:
            db.execute("INSERT INTO bot_starts (at, client, language, search_id)"
                       " VALUES (?, ?, ?, ?)",
                       (start.at, start.client, start.language, start.search_id))

    def record_handoff(self, handoff: BotHandoff) -> None:
        """Store that a conversation was handed to a human; the reasons as comma-joined codes."""
        with self._db.connection("record a hand-off") as db:
            db.execute("INSERT INTO bot_handoffs (at, client, language, reasons, search_id)"
                       " VALUES (?, ?, ?, ?, ?)",
                       (handoff.at, handoff.client, handoff.language,
                        ",".join(handoff.reasons), handoff.search_id))

    def starts(self, since: float | None = None, until: float | None = None
               ) -> Iterator[BotStart]:
        """Yield the starts with since <= at < until, oldest first."""
        where, params = _window(since, until)
        with self._db.connection("read conversation starts") as db:
            rows = db.execute("SELECT at, client, language, search_id FROM bot_starts"
                              f"{where} ORDER BY at, id", params).fetchall()
        for row in rows:
            yield BotStart(*row)

    def handoffs(self, since: float | None = None, until: float | None = None
                 ) -> Iterator[BotHandoff]:
        """Yield the hand-offs with since <= at < until, oldest first."""
        where, params = _window(since, until)
        with self._db.connection("read hand-offs") as db:
            rows = db.execute("SELECT at, client, language, reasons, search_id FROM"
                              f" bot_handoffs{where} ORDER BY at, id", params).fetchall()
        for at, client, language, reasons, search_id in rows:
            yield BotHandoff(at, client, language, tuple(c for c in reasons.split(",") if c),
                             search_id)

    def purge(self, before: float) -> int:
        """Delete the starts and hand-offs recorded before a time; return how many."""
        with self._db.transaction("delete old conversation starts and hand-offs") as db:
            starts = db.execute("DELETE FROM bot_starts WHERE at < ?", (before,)).rowcount
            handoffs = db.execute("DELETE FROM bot_handoffs WHERE at < ?", (before,)).rowcount
        return starts + handoffs

    def close(self) -> None:
        """Close the database connection; a later call opens it again."""
        self._db.close()
