"""Dashboard logins: server-side sessions of editor keys, in the channels database.

Logging in to ``/admin`` with an editor key creates a session: a random token, which the
browser keeps in a cookie, and a random CSRF token, which every form of the dashboard
carries. Only the SHA-256 digest of the session token is stored (a copy of the database
lets no one in). A session lasts ``KBSEARCH_ADMIN_SESSION_MINUTES`` from the login; logging
out deletes it at once, in every server process, since they all read the same table::

    admin_sessions   one row per login: token digest, key id, CSRF token, created, expires
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from kbsearch.errors import AdminSessionStoreError
from kbsearch.stores.channels_db import channels_database

TOKEN_BYTES = 32
COLUMNS = "token_digest, key_id, csrf, created, expires"


@dataclass(frozen=True)
class AdminSession:
    """A dashboard login: whose key, its CSRF token, and when it began and ends (epoch s)."""

    token_digest: str
    key_id: str
    csrf: str
    created: float
    expires: float


def token_digest(token: str) -> str:
    """Return the SHA-256 hex digest under which a session token is stored."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@runtime_checkable
class AdminSessionStore(Protocol):
    """Where dashboard sessions are kept."""

    def create(self, key_id: str, seconds: float, now: float | None = None
               ) -> tuple[AdminSession, str]:
        """Start a session for a key lasting ``seconds``; return it and its secret token."""
        ...

    def find(self, token: str, now: float | None = None) -> AdminSession | None:
        """Return the live session of a token; None for an unknown or expired one."""
        ...

    def delete(self, token: str) -> None:
        """End the session of a token (nothing happens for an unknown one)."""
        ...

    def delete_key(self, key_id: str) -> int:
        """End every session of a key; return how many there were."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


class SQLiteAdminSessionStore:
    """An AdminSessionStore in the ``admin_sessions`` table of the channels database."""

    def __init__(self, path: Path | str) -> None:
        """Remember where the database lives; nothing is opened yet."""
        self.path = Path(path)
        self._db = channels_database(self.path, "admin session store", AdminSessionStoreError)

    def create(self, key_id: str, seconds: float, now: float | None = None
               ) -> tuple[AdminSession, str]:
        """Start a session for a key lasting ``seconds``; return it and its secret token.

        Expired sessions of every key are deleted on the way.
        """
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(TOKEN_BYTES)
        session = AdminSession(token_digest(token), key_id, secrets.token_urlsafe(TOKEN_BYTES),
                               now, now + seconds)
        with self._db.transaction("start a dashboard session") as conn:
            conn.execute("DELETE FROM admin_sessions WHERE expires <= ?", (now,))
            conn.execute(f"INSERT INTO admin_sessions ({COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                         (session.token_digest, session.key_id, session.csrf,
                          session.created, session.expires))
        return session, token

    def find(self, token: str, now: float | None = None) -> AdminSession | None:
        """Return the live session of a token; None for an unknown or expired one."""
        now = time.time() if now is None else now
        with self._db.connection("read a dashboard session") as conn:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM admin_sessions WHERE token_digest = ? AND expires > ?",
                (token_digest(token), now)).fetchone()
        return _session(row) if row else None

    def delete(self, token: str) -> None:
        """End the session of a token (nothing happens for an unknown one)."""
        with self._db.transaction("end a dashboard session") as conn:
            conn.execute("DELETE FROM admin_sessions WHERE token_digest = ?",
                         (token_digest(token),))

    def delete_key(self, key_id: str) -> int:
        """End every session of a key; return how many there were."""
        with self._db.transaction("end the dashboard sessions of a key") as conn:
            return conn.execute("DELETE FROM admin_sessions WHERE key_id = ?",
                                (key_id,)).rowcount

    def close(self) -> None:
        """Close the connection; a later call opens it again."""
        self._db.close()


def _session(row: tuple[Any, ...]) -> AdminSession:
    """Return a row of ``COLUMNS`` as a session."""
    return AdminSession(str(row[0]), str(row[1]), str(row[2]), float(row[3]), float(row[4]))
