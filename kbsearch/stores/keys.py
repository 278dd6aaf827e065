"""API keys with roles: who may see internal articles.

A key looks like ``kbs_<id>_<secret>``. Only its SHA-256 digest is stored: in a JSON file
(setting ``keys_file``, managed by ``kbsearch keys create | list | revoke``) or in the
environment variable ``KBSEARCH_API_KEYS`` as comma-separated ``role:sha256hex`` entries,
for deployments that inject secrets. No key means the public role; a key that is unknown
or revoked is refused, never treated as public.

Roles: ``bot`` (chatbots: public articles), ``agent`` and ``editor`` (internal articles
too). Which articles a role sees is decided by ``kbsearch.content.visibility``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from kbsearch.content.visibility import PUBLIC, ROLES, Caller
from kbsearch.errors import ConfigError, KbsearchError
from kbsearch.fileio import atomic_write_text

PREFIX = "kbs"


class AuthError(KbsearchError):
    """An API key was given but is malformed, unknown or revoked."""


class TooManyFailedAuthError(KbsearchError):
    """A client address sent too many unknown or revoked keys; it must wait before the next."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"too many failed API key attempts from this address; no key is checked for it "
            f"for {retry_after} s (Retry-After)"
        )


@dataclass(frozen=True)
class ApiKey:
    """A stored key: its public id, role, a name for people, and the digest of the key."""

    key_id: str
    role: str
    name: str
    created: str
    digest: str
    revoked: bool = False


def digest(key: str) -> str:
    """Return the SHA-256 hex digest under which a key is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_role(role: str) -> str:
    """Return the role, or raise ConfigError naming the allowed ones."""
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    return role


def keys_from_env(value: str) -> list[ApiKey]:
    """Parse ``role:sha256hex`` entries (comma-separated); raise ConfigError on a bad one."""
    keys = []
    for number, entry in enumerate((e.strip() for e in value.split(",")), start=1):
        if not entry:
            continue
        role, _, hexdigest = entry.partition(":")
        if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
            raise ConfigError(
                f"KBSEARCH_API_KEYS entry {number}: expected role:sha256hex (64 hex digits)"
            )
        keys.append(ApiKey(f"env{number}", check_role(role), f"environment entry {number}",
                           "", hexdigest))
    return keys


class KeyStore:
    """API keys from a JSON file (read and written here) and from the environment."""

    def __init__(self, path: Path, env_value: str = "") -> None:
        """Use the key file at ``path`` (created on the first key) and env entries."""
        self.path = Path(path)
        self.env_keys = keys_from_env(env_value)

    def _read(self) -> list[ApiKey]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read API keys {self.path}: {exc}") from None
        try:
            return [ApiKey(**entry) for entry in data["keys"]]
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{self.path}: malformed key entry ({exc})") from None

    def _write(self, keys: list[ApiKey]) -> None:
        document = {"keys": [asdict(k) for k in keys]}
        atomic_write_text(self.path, json.dumps(document, indent=2) + "\n")
        self.path.chmod(0o600)

    def create(self, role: str, name: str) -> tuple[ApiKey, str]:
        """Create a key; return it and the secret key string (shown once, never stored)."""
        check_role(role)
        key_id = secrets.token_hex(4)
        key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(24)}"
        stored = ApiKey(key_id, role, name, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        digest(key))
        self._write([*self._read(), stored])
        return stored, key

    def list(self) -> list[ApiKey]:
        """Return the keys of the file, then those of the environment."""
        return [*self._read(), *self.env_keys]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key of the file by id; raise ConfigError if there is none."""
        keys = self._read()
        for i, key in enumerate(keys):
            if key.key_id == key_id:
                keys[i] = ApiKey(**{**asdict(key), "revoked": True})
                self._write(keys)
                return keys[i]
        if any(k.key_id == key_id for k in self.env_keys):
            raise ConfigError(f"key {key_id} comes from KBSEARCH_API_KEYS; remove it there")
        raise ConfigError(f"no API key with id {key_id!r} in {self.path}")

    def authenticate(self, key: str | None) -> Caller:
        """Return the caller a key stands for (the public without one); raise AuthError."""
        if key is None or not key.strip():
            return PUBLIC
        wanted = digest(key.strip())
        found: ApiKey | None = None
        for stored in self.list():  # every key is compared, found or not: constant time
            if hmac.compare_digest(stored.digest, wanted):
                found = stored
        if found is None:
            raise AuthError("unknown API key")
        if found.revoked:
            raise AuthError("this API key has been revoked")
        return Caller(found.role, found.key_id)


class HeaderLookup(Protocol):
    """Request headers as a web framework hands them over (a dict works too)."""

    def get(self, key: str, /) -> str | None:
        """Return a header's value, or None."""
        ...


def key_from_headers(headers: HeaderLookup) -> str | None:
    """Return the key of ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, if any."""
    authorization = headers.get("Authorization") or ""
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return headers.get("X-API-Key")
