"""The chatbot's server-side conversations and where they are kept between turns.

A ``Conversation`` holds the customer's turns (``Turn``, with the articles offered as
``Offer``) and verdicts (``Verdict``). ``ConversationStore`` is the interface of the store;
``SQLiteConversationStore`` keeps them in the ``bot_conversations`` table of the channels
database (``KBSEARCH_CHANNELS_DB``, schema in :mod:`kbsearch.stores.channels_db`)::

    bot_conversations   one row per client and conversation id; turns and verdicts as JSON
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from kbsearch.errors import ConversationConflictError, ConversationStoreError
from kbsearch.stores.channels_db import channels_database
from kbsearch.stores.checkpoints import CHECKPOINT_INTERVAL_S


@dataclass(frozen=True)
class Offer:
    """An article the bot offered in a turn, with its probability of solving the question."""

    article_id: str
    title: str
    probability: float
    position: int


@dataclass(frozen=True)
class Turn:
    """One customer message and what the bot answered."""

    at: float
    message: str
    terms: tuple[str, ...]
    search_id: str | None
    offers: tuple[Offer, ...]

    @property
    def best(self) -> Offer | None:
        """Return the article offered first, if any."""
        return self.offers[0] if self.offers else None


@dataclass(frozen=True)
class Verdict:
    """The customer's feedback on an offered article."""

    at: float
    article_id: str
    event: str
    search_id: str | None = None


@dataclass(frozen=True)
class Conversation:
    """A chatbot conversation as kept between turns."""

    client: str
    id: str
    started: float
    updated: float
    turns: tuple[Turn, ...] = ()
    verdicts: tuple[Verdict, ...] = ()
    handed_off: bool = False

    def to_json(self) -> str:
        """Serialise the turns and verdicts for the store."""
        return json.dumps(
            {"turns": [asdict(t) for t in self.turns],
             "verdicts": [asdict(v) for v in self.verdicts],
             "handed_off": self.handed_off},
            ensure_ascii=False,
        )

    @classmethod
    def from_row(cls, client: str, conversation_id: str, started: float, updated: float,
                 state: str) -> Conversation:
        """Rebuild a conversation from a stored row."""
        data = json.loads(state)
        turns = tuple(
            Turn(at=t["at"], message=t["message"], terms=tuple(t["terms"]),
                 search_id=t["search_id"], offers=tuple(Offer(**o) for o in t["offers"]))
            for t in data["turns"]
        )
        verdicts = tuple(Verdict(**v) for v in data["verdicts"])
        return cls(client, conversation_id, started, updated, turns, verdicts,
                   bool(data["handed_off"]))


@runtime_checkable
class ConversationStore(Protocol):
    """Where conversations are kept between turns, forgotten after an idle time."""

    def get(self, client: str, conversation_id: str, now: float) -> Conversation | None:
        """Return a live conversation, or None when there is none or it expired."""
        ...

    def save(self, conversation: Conversation, previous_updated: float | None) -> None:
        """Store a conversation (``previous_updated`` None for a new one).

        Raises ConversationConflictError when another turn changed it in between.
        """
        ...

    def purge(self, now: float) -> int:
        """Delete every conversation idle longer than the expiry; return how many."""
        ...

    def forget(self, text: str) -> int:
        """Delete the conversations in which a text occurs (any case); return how many."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


class SQLiteConversationStore:
    """A ConversationStore in the ``bot_conversations`` table of the channels database.

    A conversation idle longer than ``idle_seconds`` is treated as gone and deleted. Saves
    are optimistic: a turn that raced another turn of the same conversation raises
    ConversationConflictError instead of silently overwriting it. The file is opened on
    first use; one connection serves all threads, guarded by a lock.
    """

    def __init__(self, path: Path | str, idle_seconds: float) -> None:
        """Remember where the database lives and the idle expiry; nothing is opened yet."""
        self.path = Path(path)
        self.idle_seconds = idle_seconds
        self._db = channels_database(self.path, "conversation store", ConversationStoreError,
                                     checkpoint_every=CHECKPOINT_INTERVAL_S)

    def get(self, client: str, conversation_id: str, now: float) -> Conversation | None:
        """Return a live conversation, or None when there is none or it expired."""
        with self._db.connection("read a conversation") as db:
            row = db.execute(
                "SELECT started, updated, state FROM bot_conversations"
                " WHERE client = ? AND id = ?", (client, conversation_id),
            ).fetchone()
            if row is None:
                return None
            if row[1] < now - self.idle_seconds:
                db.execute("DELETE FROM bot_conversations WHERE client = ? AND id = ?"
                           " AND updated = ?", (client, conversation_id, row[1]))
                return None
        return Conversation.from_row(client, conversation_id, row[0], row[1], row[2])

    def save(self, conversation: Conversation, previous_updated: float | None) -> None:
        """Store a conversation; ``previous_updated`` is None for a new one.

        Raises ConversationConflictError when another turn changed it in between.
        """
        with self._db.transaction("save a conversation") as db:
            if previous_updated is None:
                cursor = db.execute(
                    "INSERT INTO bot_conversations (client, id, started, updated, state)"
                    " VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (client, id) DO UPDATE SET started = excluded.started,"
                    " updated = excluded.updated, state = excluded.state"
                    " WHERE bot_conversations.updated < ?",
                    (conversation.client, conversation.id, conversation.started,
                     conversation.updated, conversation.to_json(),
                     conversation.updated - self.idle_seconds),
                )
            else:
                cursor = db.execute(
                    "UPDATE bot_conversations SET updated = ?, state = ?"
                    " WHERE client = ? AND id = ? AND updated = ?",
                    (conversation.updated, conversation.to_json(), conversation.client,
                     conversation.id, previous_updated),
                )
            if cursor.rowcount != 1:
                raise ConversationConflictError(
                    f"conversation {conversation.id!r} was changed by another turn at "
                    "the same time; send the turn again"
                )

    def purge(self, now: float) -> int:
        """Delete every conversation idle longer than the expiry; return how many."""
        with self._db.connection("delete idle conversations") as db:
            cursor = db.execute(
                "DELETE FROM bot_conversations WHERE updated < ?", (now - self.idle_seconds,)
            )
        return cursor.rowcount

    def forget(self, text: str) -> int:
        """Delete the conversations in which a text occurs (any case); return how many."""
        wanted = text.casefold()
        with self._db.transaction("forget conversations") as db:
            keys = [(row[0], row[1]) for row in
                    db.execute("SELECT client, id, state FROM bot_conversations")
                    if wanted in row[2].casefold()]
            db.executemany(
                "DELETE FROM bot_conversations WHERE client = ? AND id = ?", keys)
        return len(keys)

    def close(self) -> None:
        """Close the database connection; a later call opens it again."""
        self._db.close()
