"""Signed feedback tokens: the proof that a caller without an API key made a search.

Feedback on a search is accepted only from the caller that made it. A caller with an API key
proves it with the same key. A caller without one (a FAQ page reader, a public widget) gets
a ``feedback_token`` with the search: an HMAC-SHA256 of the search id under a secret that
only the server knows, so it cannot be derived from the search id, and nothing but the
secret needs to be stored. Tokens of one search never fit another.

The secret is 32 random bytes, hex, in a file (``KBSEARCH_FEEDBACK_SECRET``, created on first
use, readable by its owner only). Every worker and replica that should accept each other's
tokens reads the same file; replacing it invalidates the tokens handed out before.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
import threading
from pathlib import Path

from kbsearch.errors import ConfigError
from kbsearch.stores.feedback import SearchLog

SECRET_BYTES = 32
TOKEN_CHARS = 32  # 128 bits of the HMAC, as hex
_PURPOSE = b"kbsearch feedback token\x00"


def _create_secret(path: Path) -> None:
    """Write a new random secret to path unless a file is there; never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".secret-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(SECRET_BYTES) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        try:
            os.link(temporary, path)  # fails if another process created it first: keep theirs
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)


def load_secret(path: Path) -> bytes:
    """Return the secret in path, creating the file first if there is none.

    Raises ConfigError naming the file when it cannot be created, read, or holds anything
    but 64 hex digits.
    """
    try:
        if not path.exists():
            _create_secret(path)
        text = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"feedback secret {path}: cannot be read or created: {exc}") from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != SECRET_BYTES:
        raise ConfigError(
            f"feedback secret {path}: expected {SECRET_BYTES * 2} hex digits; delete the file "
            "to have a new one made (tokens handed out before stop working)"
        )
    return secret


class FeedbackTokens:
    """Signs search ids and checks signatures with the secret in one file (read once)."""

    def __init__(self, path: Path) -> None:
        """Use the secret in ``path``; it is read (or created) on first use."""
        self.path = Path(path)
        self._secret: bytes | None = None
        self._lock = threading.Lock()

    def secret(self) -> bytes:
        """Return the secret, reading or creating its file the first time; raise ConfigError."""
        if self._secret is None:
            with self._lock:
                if self._secret is None:
                    self._secret = load_secret(self.path)
        return self._secret

    def token(self, search_id: str) -> str:
        """Return the feedback token of a search."""
        digest = hmac.new(self.secret(), _PURPOSE + search_id.encode("utf-8"), hashlib.sha256)
        return digest.hexdigest()[:TOKEN_CHARS]

    def verify(self, search_id: str, token: object) -> bool:
        """Return whether ``token`` is the feedback token of this search (constant time)."""
        if not isinstance(token, str) or len(token) != TOKEN_CHARS or not token.isascii():
            return False
        return hmac.compare_digest(self.token(search_id), token)

    def made_by(self, search: SearchLog | None, key_id: str | None, token: object) -> bool:
        """Return whether a caller made a logged search (False for None: never logged).

        A search made with an API key was made by that key (``key_id``); one made without
        a key by whoever holds its token. Keys are compared in constant time.
        """
        if search is None:
            return False
        if search.owner:
            return hmac.compare_digest(search.owner.encode(), (key_id or "").encode())
        return self.verify(search.search_id, token)
