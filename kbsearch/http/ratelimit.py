"""Rate limits per client (flask-limiter), so that no one client can flood the service.

Callers without a key are counted by address, callers with a key by the key (a bot
platform speaks for many customers from one address, so keys get a larger allowance).
``/healthz`` and static files are never limited. Posting the FAQ page's callback form has
its own, much smaller limit on top, since every request there lands in a person's queue.

Addresses come from the connection, or from ``X-Forwarded-For`` only as far as
``KBSEARCH_TRUSTED_PROXIES`` proxies vouch for it (werkzeug's ProxyFix): a header a client
sets itself never decides which bucket it counts against.
"""

from __future__ import annotations

import hashlib
import math
import time

from flask import Flask, request
from flask_limiter import Limiter
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from werkzeug.middleware.proxy_fix import ProxyFix

from kbsearch.config import Settings
from kbsearch.stores.keys import TooManyFailedAuthError, key_from_headers

UNLIMITED_ENDPOINTS = frozenset({"static", "admin.static", "health.healthz"})
CALLBACK_ENDPOINT = "web.callback_submit"


def client_address() -> str:
    """Return the client's address as the trusted proxies report it."""
    return request.remote_addr or "unknown"


def api_key() -> str | None:
    """Return the API key sent to an API route (the FAQ pages take none: keys count nothing)."""
    return key_from_headers(request.headers) if request.path.startswith("/api/") else None


def rate_key() -> str:
    """Return the bucket a request counts against: its API key's digest, or its address.

    An invalid key gets its own bucket too, but the API refuses it with 401 before any
    work; on the FAQ pages a key header is ignored, so made-up keys buy no allowance.
    """
    key = api_key()
    if key:
        return "key:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:24]
    return "addr:" + client_address()


class FailedAuthLimit:
    """Counts failed authentications (unknown or revoked keys) per client address.

    Over the limit (``KBSEARCH_RATE_LIMIT_AUTH_FAILURES``), no key from that address is
    checked at all, the right one neither, until the moving window has passed: guessing
    keys gets no answer. Counters live where the rate limits' do (``rate_limit_storage``).
    """

    NAMESPACE = "auth-failures"

    def __init__(self, limit: str, storage_uri: str) -> None:
        """Allow ``limit`` failures (a limits string, '' for none) counted in the storage."""
        self.items = parse_many(limit) if limit else []
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def check(self, address: str) -> None:
        """Raise TooManyFailedAuthError if the address has used up its failed attempts."""
        for item in self.items:
            if not self.limiter.test(item, self.NAMESPACE, address):
                reset = self.limiter.get_window_stats(item, self.NAMESPACE, address).reset_time
                raise TooManyFailedAuthError(max(1, math.ceil(reset - time.time())))

    def failed(self, address: str) -> None:
        """Count one failed authentication from the address."""
        for item in self.items:
            self.limiter.hit(item, self.NAMESPACE, address)


def trust_proxies(app: Flask, count: int) -> None:
    """Believe the forwarding headers of ``count`` reverse proxies in front of the app."""
    if count > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=count, x_proto=count, x_host=count
        )


def install_limits(app: Flask, settings: Settings) -> Limiter:
    """Attach a limiter with the settings' limits to the app and return it."""

    def default_limit() -> str:
        return settings.rate_limit_keyed if api_key() else settings.rate_limit

    def exempt() -> bool:
        return request.endpoint in UNLIMITED_ENDPOINTS or not default_limit()

    limiter = Limiter(
        rate_key,
        app=app,
        application_limits=[default_limit],  # one allowance over all routes together
        application_limits_exempt_when=exempt,
        storage_uri=settings.rate_limit_storage,
        strategy="moving-window",
        headers_enabled=True,
    )
    if settings.rate_limit_callbacks and CALLBACK_ENDPOINT in app.view_functions:
        view = app.view_functions[CALLBACK_ENDPOINT]
        limited = limiter.limit(
            settings.rate_limit_callbacks, key_func=lambda: "addr:" + client_address(),
            override_defaults=False,
        )(view)
        # flask-limiter types its decorator for async views too; this view is synchronous
        app.view_functions[CALLBACK_ENDPOINT] = limited  # type: ignore[assignment]
    return limiter
