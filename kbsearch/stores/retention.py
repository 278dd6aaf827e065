"""How long kbsearch keeps what it is told, and forgetting a person on request.

``purge`` deletes searches (with their results and feedback) older than
``KBSEARCH_RETENTION_SEARCH_DAYS``, callback requests older than
``KBSEARCH_RETENTION_CALLBACK_DAYS``, conversations idle past the bot's idle time, and the
bot's record of conversations started and handed off (:mod:`kbsearch.stores.handoffs`)
with the searches.
``kbsearch purge`` runs it; a running server runs it every ``KBSEARCH_PURGE_EVERY_HOURS``
(:class:`DailyPurge`).
``forget`` deletes every search, conversation and callback request in which a text occurs
(``kbsearch forget --contains TEXT``: the right to erasure). The bot's record of starts and
hand-offs holds no text (codes, times, pseudonymous client ids), so nothing in it can hold
the text; it goes by purge alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kbsearch.config import Settings
from kbsearch.errors import KbsearchError, StoreError
from kbsearch.stores.callbacks import CallbackStore
from kbsearch.stores.conversations import ConversationStore
from kbsearch.stores.feedback import FeedbackStore
from kbsearch.stores.handoffs import HandoffStore

log = logging.getLogger(__name__)
DAY = 86_400.0
MIN_FORGET_CHARS = 3


@dataclass(frozen=True)
class Stores:
    """Every store that keeps what people typed or did, each with its own retention."""

    feedback: FeedbackStore
    callbacks: CallbackStore
    conversations: ConversationStore
    handoffs: HandoffStore


def purge(stores: Stores, settings: Settings, now: float | None = None) -> dict[str, int]:
    """Delete what is older than its retention; return how many of each were deleted."""
    now = time.time() if now is None else now
    searches_before = now - settings.retention_search_days * DAY
    return {
        "searches": stores.feedback.purge(searches_before),
        "callback_requests": stores.callbacks.purge(
            now - settings.retention_callback_days * DAY),
        "conversations": stores.conversations.purge(now),
        "bot_records": stores.handoffs.purge(searches_before),
    }


def forget(stores: Stores, text: str) -> dict[str, int]:
    """Delete every entry in which a text occurs; return how many of each were deleted.

    The bot's record of starts and hand-offs is not searched: it holds no text.

    Raises KbsearchError for a text shorter than MIN_FORGET_CHARS characters, which
    would match far more than one person's entries.
    """
    text = text.strip()
    if len(text) < MIN_FORGET_CHARS:
        raise KbsearchError(f"--contains: give at least {MIN_FORGET_CHARS} characters (an "
                            f"e-mail address, a phone number, a name), got {text!r}")
    return {
        "searches": stores.feedback.forget(text),
        "callback_requests": stores.callbacks.forget(text),
        "conversations": stores.conversations.forget(text),
    }


class DailyPurge:
    """Runs :func:`purge` from a running server: first on its first call, then at most once
    every ``purge_every_hours`` (24 by default; 0 turns it off)."""

    def __init__(self, stores: Callable[[], Stores], settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        """Remember where the stores are; nothing runs until :meth:`run_if_due`."""
        self.stores = stores
        self.settings = settings
        self.clock = clock
        self._last: float | None = None
        self._lock = threading.Lock()

    def run_if_due(self) -> dict[str, int] | None:
        """Purge when a day has passed since the last run; never raise (failures are logged)."""
        every = self.settings.purge_every_hours * 3600.0
        now = self.clock()
        if not every or (self._last is not None and now - self._last < every):
            return None
        if not self._lock.acquire(blocking=False):
            return None  # another thread is purging right now
        try:
            self._last = now
            deleted = purge(self.stores(), self.settings, now)
            log.info("retention: deleted %s", deleted)
            return deleted
        except StoreError as exc:
            log.warning("retention purge failed: %s", exc)
            return None
        except Exception:  # noqa: BLE001 - a purge must never fail the request it rides on
            log.exception("retention purge failed")
            return None
        finally:
            self._lock.release()
