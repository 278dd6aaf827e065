"""Callback requests from the FAQ page: validation and where they are kept.

A customer who wants a person to call leaves a name, a phone number, a preferred time and a
short description. ``parse_callback`` cleans and checks the form fields and raises
``CallbackError`` naming every bad field. ``CallbackStore`` is the interface of the store;
``SQLiteCallbackStore`` keeps the requests in the ``callback_requests`` table of the channels
database (``KBSEARCH_CHANNELS_DB``, schema in :mod:`kbsearch.stores.channels_db`)::

    callback_requests   one row per request; reference is the number the customer is shown
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import secrets
import sqlite3
import sys
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from kbsearch.errors import CallbackError, CallbackStoreError
from kbsearch.stores.channels_db import channels_database

TimeSlot = Literal["asap", "morning", "midday", "afternoon", "evening"]
CallbackStatus = Literal["open", "done"]
TIME_SLOTS: tuple[str, ...] = get_args(TimeSlot)
STATUSES: tuple[str, ...] = get_args(CallbackStatus)
NAME_MAX = 100
DESCRIPTION_MAX = 500
CONTEXT_MAX = 300
PHONE_DIGITS = (6, 15)
PHONE_CHARACTERS = re.compile(r"\+?[0-9 ()/\-.]+")
KEPT_FORMAT_CHARACTERS = frozenset("\u200c\u200d")  # zero-width (non-)joiner: part of words
REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
REFERENCE = re.compile(r"RR-[A-Z2-9]{6}")
COLUMNS = "reference, created, name, phone, preferred_time, description, language, context, status"

@dataclass(frozen=True)
class CallbackRequest:
    """A checked callback request: who to call, when, and about what.

    ``context`` says where the customer came from (``search: <query>`` or
    ``article: <id>``), so that the agent who calls back knows what was tried.
    """

    name: str
    phone: str
    preferred_time: str
    description: str
    language: str = "de"
    context: str = ""


@dataclass(frozen=True)
class StoredCallback:
    """A callback request as stored, with the reference the customer was shown."""

    reference: str
    created: float
    request: CallbackRequest
    status: str = "open"


def callback_json(stored: StoredCallback) -> dict[str, Any]:
    """Return a stored request as JSON-ready data, its time as ISO 8601 in UTC."""
    created = dt.datetime.fromtimestamp(stored.created, dt.UTC).isoformat(timespec="seconds")
    return {
        "reference": stored.reference, "created": created, "status": stored.status,
        "name": stored.request.name, "phone": stored.request.phone,
        "preferred_time": stored.request.preferred_time, "language": stored.request.language,
        "description": stored.request.description, "context": stored.request.context,
    }


def clean_text(value: str, multiline: bool = False) -> str:
    """Return text without control and formatting characters, its spaces tidied.

    Line breaks survive only with ``multiline`` (at most one blank line in a row); tabs
    become spaces. Zero-width joiners, which belong to some words and emoji, are kept.
    """
    value = unicodedata.normalize("NFC", value).replace("\r\n", "\n").replace("\r", "\n")
    kept = []
    for char in value:
        if char == "\n":
            kept.append("\n" if multiline else " ")
        elif char == "\t":
            kept.append(" ")
        elif unicodedata.category(char) in ("Cc", "Cf") and char not in KEPT_FORMAT_CHARACTERS:
            continue
        else:
            kept.append(char)
    lines = [" ".join(line.split()) for line in "".join(kept).split("\n")]
    text = "\n".join(lines).strip()
    return re.sub(r"\n{3,}", "\n\n", text)


def dropped(char: str) -> bool:
    """Return whether clean_text drops a character or counts it as white space."""
    return char.isspace() or (unicodedata.category(char) in ("Cc", "Cf")
                              and char not in KEPT_FORMAT_CHARACTERS)


@functools.cache
def text_pattern() -> str:
    """Return a regular expression that finds a character clean_text keeps, not white space.

    ``re.search(text_pattern(), value)`` is true exactly when ``clean_text(value)`` is not
    empty; in a JSON schema (``pattern``, which searches too) it says "has some text". The
    expression is one character class of ``\\uXXXX`` ranges (``\\UXXXXXXXX`` above the
    BMP is written as the characters themselves), which Python and ECMA-262 read alike.
    """
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if dropped(chr(code)):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))

    def written(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    return "[^" + "".join(written(low) if low == high else f"{written(low)}-{written(high)}"
                          for low, high in ranges) + "]"


def parse_callback(
    fields: Mapping[str, str], language: str = "de", context: str = ""
) -> CallbackRequest:
    """Clean and check the form fields of a callback request.

    Raises CallbackError whose ``problems`` name every bad field (``name``, ``phone``,
    ``preferred_time``, ``description``) with a code: ``required``, ``too_long`` or
    ``invalid``.
    """
    name = clean_text(fields.get("name", ""))
    phone = clean_text(fields.get("phone", ""))
    slot = clean_text(fields.get("preferred_time", ""))
    description = clean_text(fields.get("description", ""), multiline=True)
    problems: dict[str, str] = {}
    if not name:
        problems["name"] = "required"
    elif len(name) > NAME_MAX:
        problems["name"] = "too_long"
    if not phone:
        problems["phone"] = "required"
    elif not valid_phone(phone):
        problems["phone"] = "invalid"
    if not slot:
        problems["preferred_time"] = "required"
    elif slot not in TIME_SLOTS:
        problems["preferred_time"] = "invalid"
    if not description:
        problems["description"] = "required"
    elif len(description) > DESCRIPTION_MAX:
        problems["description"] = "too_long"
    if problems:
        raise CallbackError(problems)
    return CallbackRequest(
        name=name, phone=phone, preferred_time=slot, description=description,
        language=language, context=clean_text(context)[:CONTEXT_MAX],
    )


def valid_phone(phone: str) -> bool:
    """Return whether a phone number has 6 to 15 digits and only digits, spaces, + - / . ( )."""
    if not PHONE_CHARACTERS.fullmatch(phone):
        return False
    digits = sum(char.isdigit() for char in phone)
    return PHONE_DIGITS[0] <= digits <= PHONE_DIGITS[1]


def new_reference() -> str:
    """Return a random reference a customer can read out on the phone, e.g. ``RR-7KQ2MX``."""
    return "RR-" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(6))


@runtime_checkable
class CallbackStore(Protocol):
    """Where callback requests are kept; agents list them and mark them done."""

    def add(self, request: CallbackRequest, now: float | None = None) -> StoredCallback:
        """Store a request and return it with its new reference; raise CallbackStoreError."""
        ...

    def recent(self, limit: int = 100, status: str | None = None) -> list[StoredCallback]:
        """Return the newest requests first (only those with ``status`` if given)."""
        ...

    def set_status(self, reference: str, status: str) -> StoredCallback:
        """Mark a request open or done and return it; raise CallbackError if it is unknown."""
        ...

    def purge(self, before: float) -> int:
        """Delete the requests made before a time; return how many."""
        ...

    def forget(self, text: str) -> int:
        """Delete the requests in any of whose fields a text occurs (any case); count them."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


class SQLiteCallbackStore:
    """A CallbackStore in the ``callback_requests`` table of the channels database.

    The file is opened on first use (its folder created if missing), in WAL mode; one
    connection serves all threads, guarded by a lock.
    """

    def __init__(self, path: Path | str) -> None:
        """Remember where the database lives; nothing is opened yet."""
        self.path = Path(path)
        self._db = channels_database(self.path, "callback store", CallbackStoreError)

    def add(self, request: CallbackRequest, now: float | None = None) -> StoredCallback:
        """Store a request and return it with its new reference; raise CallbackStoreError."""
        created = time.time() if now is None else now
        with self._db.connection("store a callback request") as conn:
            for _ in range(5):
                reference = new_reference()
                try:
                    conn.execute(
                        "INSERT INTO callback_requests (reference, created, name, phone, "
                        "preferred_time, description, language, context) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (reference, created, request.name, request.phone,
                         request.preferred_time, request.description, request.language,
                         request.context),
                    )
                except sqlite3.IntegrityError as exc:
                    if "reference" not in str(exc):
                        raise
                    continue
                return StoredCallback(reference, created, request)
        raise CallbackStoreError(f"callback store {self.path}: no free reference found")

    def recent(self, limit: int = 100, status: str | None = None) -> list[StoredCallback]:
        """Return the newest requests first (only those with ``status`` if given)."""
        where, params = ("WHERE status = ? ", [status]) if status else ("", [])
        with self._db.connection("read callback requests") as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM callback_requests {where}"
                "ORDER BY created DESC, id DESC LIMIT ?",
                (*params, int(limit)),
            ).fetchall()
        return [_stored(row) for row in rows]

    def set_status(self, reference: str, status: str) -> StoredCallback:
        """Mark a request open or done and return it; raise CallbackError if it is unknown."""
        if status not in STATUSES:
            raise CallbackError({"status": "invalid"},
                                f"status: {status!r} is not one of {', '.join(STATUSES)}")
        reference = reference.strip().upper()
        if not REFERENCE.fullmatch(reference):
            raise CallbackError({"reference": "invalid"},
                                f"reference: {reference!r} is not of the form RR-XXXXXX")
        with self._db.transaction("change the status of a callback request") as conn:
            changed = conn.execute(
                "UPDATE callback_requests SET status = ? WHERE reference = ?",
                (status, reference),
            ).rowcount
            row = conn.execute(
                f"SELECT {COLUMNS} FROM callback_requests WHERE reference = ?", (reference,)
            ).fetchone()
        if not changed or row is None:
            raise CallbackError({"reference": "unknown"},
                                f"reference: no callback request {reference}")
        return _stored(row)

    def purge(self, before: float) -> int:
        """Delete the requests made before a time; return how many."""
        with self._db.transaction("delete old callback requests") as conn:
            return conn.execute(
                "DELETE FROM callback_requests WHERE created < ?", (before,)).rowcount

    def forget(self, text: str) -> int:
        """Delete the requests in any of whose fields a text occurs (any case); count them.

        Phone numbers also match by their digits alone ("0171 2345678" = "01712345678").
        """
        wanted = text.casefold()
        digits = "".join(c for c in text if c.isdigit())
        with self._db.transaction("forget callback requests") as conn:
            rows = conn.execute(
                "SELECT id, name, phone, description, context FROM callback_requests")
            ids = [(row[0],) for row in rows
                   if any(wanted in str(v).casefold() for v in row[1:])
                   or (len(digits) >= 6 and digits in "".join(c for c in row[2] if c.isdigit()))]
            conn.executemany("DELETE FROM callback_requests WHERE id = ?", ids)
        return len(ids)

    def close(self) -> None:
        """Close the connection; a later call opens it again."""
        self._db.close()


def _stored(row: tuple[Any, ...]) -> StoredCallback:
    """Return a row of ``COLUMNS`` as a stored request."""
    return StoredCallback(row[0], row[1], CallbackRequest(*row[2:8]), row[8])
