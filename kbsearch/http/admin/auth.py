"""Who is logged in to the dashboard: editor keys, server-side sessions, CSRF tokens.

Logging in with an editor key (``POST /admin/login``) starts a session in the channels
database (:mod:`kbsearch.stores.admin_sessions`) and gives the browser its random token in
the cookie ``kbsearch_admin``: ``Secure``, ``HttpOnly``, ``SameSite=Strict``, sent only to
``/admin`` and ``/api/v1/admin`` (the dashboard's script starts reindexing there). Browsers
keep a ``Secure`` cookie over https, and over plain http only from ``localhost`` or
``127.0.0.1``: serve the dashboard behind TLS, or use it on the machine itself.

Every request looks the session up again and checks that its key is still an active editor
key, so logging out and ``kbsearch keys revoke`` end a session at once, in every worker.
Every form carries the session's CSRF token (``csrf_token``; the script sends it as the
``X-CSRF-Token`` header), compared in constant time on every POST. The login form, which
comes before any session, is protected the same way by a token in a short-lived cookie of
its own (double submit).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from flask import g, request
from werkzeug.wrappers import Response

from kbsearch.errors import KbsearchError
from kbsearch.http.context import check_key, components
from kbsearch.stores.admin_sessions import AdminSession
from kbsearch.stores.keys import ApiKey, AuthError, TooManyFailedAuthError

COOKIE = "kbsearch_admin"
COOKIE_PATHS = ("/admin", "/api/v1/admin")
LOGIN_COOKIE = "kbsearch_admin_login"
LOGIN_PATH = "/admin/login"
LOGIN_COOKIE_SECONDS = 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
EDITOR = "editor"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


class LoginRefused(KbsearchError):
    """A key that may not log in to the dashboard; ``status`` is 400, 401, 403 or 429.

    ``retry_after`` (seconds) is set with 429: too many failed logins from this address.
    """

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


class CsrfError(KbsearchError):
    """A form or script request without the session's CSRF token (400) or with another (403)."""

    def __init__(self, missing: bool) -> None:
        self.status = 400 if missing else 403
        self.code = "csrf_missing" if missing else "csrf_invalid"
        super().__init__(
            "the request came without its security token" if missing else
            "the request's security token does not belong to this login (an old page, or "
            "another tab that logged in again)")


@dataclass(frozen=True)
class Login:
    """An editor's live dashboard session and the key it was opened with."""

    session: AdminSession
    key: ApiKey

    @property
    def who(self) -> str:
        """Return who asked for something, as a job records it."""
        return f"dashboard login of key {self.key.key_id}"


def active_editor_key(key_id: str) -> ApiKey | None:
    """Return the key with this id if it is an editor key and not revoked, else None."""
    for key in components().keys.list():
        if key.key_id == key_id and not key.revoked and key.role == EDITOR:
            return key
    return None


def log_in(key_text: str) -> tuple[Login, str]:
    """Open a session for an editor key; return it and its token; raise LoginRefused."""
    if not key_text.strip():
        raise LoginRefused(400, "Enter your editor API key.")
    parts = components()
    try:
        caller = check_key(key_text)
    except TooManyFailedAuthError as exc:
        raise LoginRefused(429, f"Not logged in: too many wrong keys from this address. Try "
                                f"again in {exc.retry_after} seconds.", exc.retry_after) from None
    except AuthError as exc:
        raise LoginRefused(401, f"Not logged in: {exc}. Check that you pasted the whole key "
                                "(kbs_…).") from None
    if caller.role != EDITOR or caller.key_id is None:
        raise LoginRefused(403, f"Not logged in: this is a key with role {caller.role}; the "
                                "dashboard is for editor keys (kbsearch keys create --role "
                                "editor --name NAME).")
    key = active_editor_key(caller.key_id)
    if key is None:
        raise LoginRefused(401, "Not logged in: this key is not an active editor key.")
    seconds = parts.settings.admin_session_minutes * 60
    session, token = parts.sessions.create(key.key_id, seconds)
    return Login(session, key), token


def current_login() -> Login | None:
    """Return this request's live login (looked up once per request), or None.

    Why there is none is left in ``g.admin_ended``: ``ended`` (expired, logged out) or
    ``revoked`` (the key is revoked or no longer an editor key); None without a cookie.
    """
    if "admin_login" in g:
        return g.admin_login
    g.admin_login, g.admin_ended = None, None
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    sessions = components().sessions
    session = sessions.find(token)
    if session is None:
        g.admin_ended = "ended"
        return None
    key = active_editor_key(session.key_id)
    if key is None:
        sessions.delete_key(session.key_id)
        g.admin_ended = "revoked"
        return None
    g.admin_login = Login(session, key)
    return g.admin_login


def log_out() -> None:
    """End this request's session, if it has one."""
    token = request.cookies.get(COOKIE)
    if token:
        components().sessions.delete(token)
    g.admin_login = None


def same_token(sent: str | None, expected: str) -> None:
    """Check a sent CSRF token against the expected one in constant time; raise CsrfError."""
    if not sent:
        raise CsrfError(missing=True)
    if not hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode("utf-8")):
        raise CsrfError(missing=False)


def check_csrf(login: Login, sent: str | None) -> None:
    """Check the CSRF token sent with a POST of a logged-in editor; raise CsrfError."""
    same_token(sent, login.session.csrf)


def login_form_token() -> str:
    """Return the login form's token: the one in its cookie, or a new one."""
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)


def check_login_form() -> None:
    """Check that the login form was sent with the token of its own cookie; raise CsrfError."""
    expected = request.cookies.get(LOGIN_COOKIE)
    if not expected:
        raise CsrfError(missing=True)
    same_token(request.form.get(CSRF_FIELD), expected)


def set_login_form_cookie(response: Response, token: str) -> None:
    """Give the browser the login form's token (sent back only to the login form)."""
    response.set_cookie(LOGIN_COOKIE, token, max_age=LOGIN_COOKIE_SECONDS, path=LOGIN_PATH,
                        secure=True, httponly=True, samesite="Strict")


def set_session_cookie(response: Response, token: str, seconds: int) -> None:
    """Give the browser its session token, for the dashboard and its API only."""
    for path in COOKIE_PATHS:
        response.set_cookie(COOKIE, token, max_age=seconds, path=path, secure=True,
                            httponly=True, samesite="Strict")
    response.delete_cookie(LOGIN_COOKIE, path=LOGIN_PATH, secure=True, httponly=True,
                           samesite="Strict")


def clear_session_cookie(response: Response) -> None:
    """Make the browser forget its session token."""
    for path in COOKIE_PATHS:
        response.delete_cookie(COOKIE, path=path, secure=True, httponly=True,
                               samesite="Strict")


def cookie_will_not_stick() -> bool:
    """Return whether this request came over plain http from a host other than this machine.

    Browsers drop a ``Secure`` cookie set there, so a login would not last.
    """
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return not request.is_secure and host not in LOOPBACK_HOSTS
