"""The channels database: one SQLite file (``KBSEARCH_CHANNELS_DB``) shared by its stores.

The chatbot's conversations (:mod:`kbsearch.stores.conversations`), the FAQ page's
callback requests (:mod:`kbsearch.stores.callbacks`) and the bot's durable record of
conversations and hand-offs (:mod:`kbsearch.stores.handoffs`) live in the same file, so
they share one schema version and this one list of migrations; whichever store opens the
file first migrates it::

    bot_conversations   one row per client and conversation id; state as JSON
    callback_requests   one row per request; reference is the number the customer is shown
    bot_starts          (version 2) one row per conversation started; no text
    bot_handoffs        (version 2) one row per conversation handed to a human: reason
                        codes and the search of its last turn; no text
    admin_sessions      (version 3) one row per dashboard login
                        (:mod:`kbsearch.stores.admin_sessions`)

Version 1 is the tables as kbsearch created them before the file had a version. They were
made with ``CREATE ... IF NOT EXISTS`` and no ``user_version``, so such a file is at version
0 with the tables already there; the first migration keeps that wording and adopts it
without touching its rows.
"""

from __future__ import annotations

from pathlib import Path

from kbsearch.errors import StoreError
from kbsearch.stores.sqlite import Database, Migration

MIGRATIONS: tuple[Migration, ...] = (
    (
        "CREATE TABLE IF NOT EXISTS bot_conversations ("
        " client TEXT NOT NULL, id TEXT NOT NULL, started REAL NOT NULL,"
        " updated REAL NOT NULL, state TEXT NOT NULL, PRIMARY KEY (client, id))",
        "CREATE INDEX IF NOT EXISTS bot_conversations_updated"
        " ON bot_conversations (updated)",
        """CREATE TABLE IF NOT EXISTS callback_requests (
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
)""",
    ),
    # 2: the bot's conversations and hand-offs, kept (without text) for the analytics
    (
        "CREATE TABLE bot_starts (id INTEGER PRIMARY KEY, at REAL NOT NULL,"
        " client TEXT NOT NULL, language TEXT, search_id TEXT)",
        "CREATE INDEX bot_starts_at ON bot_starts (at)",
        "CREATE TABLE bot_handoffs (id INTEGER PRIMARY KEY, at REAL NOT NULL,"
        " client TEXT NOT NULL, language TEXT, reasons TEXT NOT NULL, search_id TEXT)",
        "CREATE INDEX bot_handoffs_at ON bot_handoffs (at)",
    ),
    # 3: the dashboard's login sessions (only a digest of each token)
    (
        "CREATE TABLE admin_sessions ("
        " token_digest TEXT PRIMARY KEY, key_id TEXT NOT NULL, csrf TEXT NOT NULL,"
        " created REAL NOT NULL, expires REAL NOT NULL)",
        "CREATE INDEX admin_sessions_expires ON admin_sessions (expires)",
        "CREATE INDEX admin_sessions_key ON admin_sessions (key_id)",
    ),
)
SCHEMA_VERSION: int = len(MIGRATIONS)


def channels_database(path: Path | str, what: str, error: type[StoreError],
                      checkpoint_every: float | None = None) -> Database:
    """Return the channels database at path for one store, opened on first use.

    The store written on every bot message checkpoints every ``checkpoint_every`` seconds
    in the background (see :class:`~kbsearch.stores.sqlite.Database`); one such store
    per file is enough.
    """
    return Database(path, MIGRATIONS, what, error, reopen=True,
                    checkpoint_every=checkpoint_every)
