"""The parts a running app is made of, and who is calling: shared by every blueprint.

``create_app`` builds one :class:`Components` and registers it on the app
(:meth:`Components.init_app`, Flask's ``init_app`` style); views reach it through
:func:`components` and the typed accessors below, never by string keys of their own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flask import Flask, current_app, g, request

from kbsearch.channels.bot import ChatBot
from kbsearch.config import Settings
from kbsearch.content.visibility import PUBLIC, Caller
from kbsearch.errors import ForbiddenError
from kbsearch.http.contract import Contract
from kbsearch.http.ratelimit import FailedAuthLimit, client_address
from kbsearch.index.reindex import ReindexBoard
from kbsearch.service import SearchService
from kbsearch.stores.admin_sessions import AdminSessionStore, SQLiteAdminSessionStore
from kbsearch.stores.callbacks import CallbackStore, SQLiteCallbackStore
from kbsearch.stores.keys import AuthError, KeyStore, key_from_headers
from kbsearch.stores.retention import Stores

EXTENSION = "kbsearch"


@dataclass(frozen=True)
class Components:
    """What the app serves with: settings, search service, stores, chatbot, request models.

    ``sessions`` and ``reindex`` are the dashboard's logins and background reindex jobs;
    ``auth_failures`` counts failed authentications per client address.
    """

    settings: Settings
    service: SearchService
    keys: KeyStore
    callbacks: CallbackStore
    bot: ChatBot
    contract: Contract
    sessions: AdminSessionStore
    reindex: ReindexBoard
    auth_failures: FailedAuthLimit

    @classmethod
    def build(cls, settings: Settings, service: SearchService | None = None) -> Components:
        """Build every part from the settings (the search service may be given)."""
        service = service or SearchService(settings)
        return cls(
            settings=settings,
            service=service,
            keys=KeyStore(settings.keys_file, settings.api_keys),
            callbacks=SQLiteCallbackStore(settings.channels_db),
            bot=ChatBot.from_settings(service, settings),
            contract=Contract.from_settings(settings),
            sessions=SQLiteAdminSessionStore(settings.channels_db),
            reindex=ReindexBoard(settings.index),
            auth_failures=FailedAuthLimit(settings.rate_limit_auth_failures,
                                          settings.rate_limit_storage),
        )

    def init_app(self, app: Flask) -> None:
        """Register the parts on an app."""
        app.extensions[EXTENSION] = self

    def stores(self) -> Stores:
        """Return the stores that keep what people typed."""
        return Stores(self.service.feedback, self.callbacks, self.bot.store, self.bot.handoffs)

    @staticmethod
    def of(app: Flask) -> Components:
        """Return the parts registered on an app."""
        parts = app.extensions[EXTENSION]
        assert isinstance(parts, Components)
        return parts


def components() -> Components:
    """Return the parts of the app handling this request."""
    return Components.of(current_app)


def service() -> SearchService:
    """Return the app's search service."""
    return components().service


def callback_store() -> CallbackStore:
    """Return the app's store of callback requests."""
    return components().callbacks


def contract() -> Contract:
    """Return the app's request models."""
    return components().contract


def authenticate() -> None:
    """Identify the caller by API key (none: the public); raise AuthError for a bad key.

    Raises TooManyFailedAuthError, without looking at the key, for an address that sent
    too many bad keys lately.
    """
    g.caller = check_key(key_from_headers(request.headers))


def check_key(key: str | None) -> Caller:
    """Return the caller a key stands for, counting a failure against the client address.

    Raises AuthError for an unknown or revoked key and TooManyFailedAuthError for an address
    over its failed attempts (``KBSEARCH_RATE_LIMIT_AUTH_FAILURES``).
    """
    parts = components()
    if key is None or not key.strip():
        return PUBLIC
    parts.auth_failures.check(client_address())
    try:
        return parts.keys.authenticate(key)
    except AuthError:
        parts.auth_failures.failed(client_address())
        raise


def caller() -> Caller:
    """Return who is calling (set from the API key before each API request)."""
    return g.get("caller", PUBLIC)


def client_identity() -> str:
    """Return an opaque identity of the caller for feedback limits: its key, or address."""
    key_id = caller().key_id
    if key_id:
        return hashlib.sha256(f"key:{key_id}".encode()).hexdigest()[:16]
    address = request.remote_addr or ""  # forwarded addresses only via trusted proxies
    return hashlib.sha256(f"addr:{address}".encode()).hexdigest()[:16] if address else ""


def require_role(roles: tuple[str, ...], route: str) -> Caller:
    """Return the caller if its key has one of ``roles``; raise AuthError or ForbiddenError."""
    who = caller()
    if who.role is None:
        raise AuthError(f"{route} needs an API key with role {' or '.join(roles)}")
    if who.role not in roles:
        raise ForbiddenError(f"{route} is for roles {' and '.join(roles)}, not {who.role}")
    return who
