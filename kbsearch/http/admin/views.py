"""The operators' dashboard (blueprint ``admin``): server-rendered pages for editor keys.

Routes::

    GET  /admin                       the dashboard: report, content gaps, stale and
                                      duplicate articles, callback requests, weights
                                      versions, the index and its reindex button
    GET  /admin/login                 the login form (an editor API key)
    POST /admin/login                 log in: a session cookie, or the form with a message
    POST /admin/logout                log out
    POST /admin/callbacks/<ref>       mark a callback request done or open again
    POST /admin/weights/promote       make a weights version current
    POST /admin/weights/rollback      make the version promoted before current again
    POST /admin/reindex               start reindexing in the background

Every page but the login form needs a live login (else a redirect to the form); every POST
needs the login's CSRF token (:mod:`kbsearch.http.admin.auth`). Every form works without
JavaScript and comes back to the dashboard with a notice; ``static/admin.js`` starts the
reindex through the JSON API instead and shows its progress as it goes.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from typing import Any

from flask import (
    Blueprint,
    Response,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, TooManyRequests

from kbsearch.errors import CallbackError, ConfigError, KbsearchError, StoreError
from kbsearch.http.admin import sections
from kbsearch.http.admin.auth import (
    COOKIE,
    CSRF_FIELD,
    CsrfError,
    Login,
    LoginRefused,
    check_csrf,
    check_login_form,
    clear_session_cookie,
    cookie_will_not_stick,
    current_login,
    log_in,
    log_out,
    login_form_token,
    set_login_form_cookie,
    set_session_cookie,
)
from kbsearch.http.admin.jobs import start_reindex
from kbsearch.http.context import components
from kbsearch.http.contract import CALLBACK_LISTS
from kbsearch.index.reindex import ReindexRunningError
from kbsearch.ranking.versions import VersionNotFoundError
from kbsearch.stores.callbacks import REFERENCE

log = logging.getLogger(__name__)
admin = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates",
                  static_folder="static")

FORM_MAX_BYTES = 4096
OPEN_ENDPOINTS = frozenset({"admin.login", "admin.login_submit", "admin.static"})
VERSION_NAME = re.compile(r"[A-Za-z0-9._-]{1,80}")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# ?notice= on the way back from a form: kind and text ({ref} and {version} checked first)
NOTICES: dict[str, tuple[str, str]] = {
    "login_needed": ("info", "Log in with an editor API key to open the dashboard."),
    "logged_out": ("ok", "You are logged out."),
    "ended": ("info", "Your login has ended (it expired, or you logged out elsewhere); "
                      "log in again."),
    "revoked": ("problem", "Your key has been revoked or is no longer an editor key; log "
                           "in with an active editor key."),
    "callback_done": ("ok", "{ref} is marked as called back."),
    "callback_open": ("ok", "{ref} is open again."),
    "callback_unknown": ("problem", "There is no callback request {ref}."),
    "callback_invalid": ("problem", "A callback request is either open or done."),
    "promoted": ("ok", "Weights version {version} is now current; searches use it within "
                       "a second."),
    "rolled_back": ("ok", "Rolled back: weights version {version} is current again."),
    "no_version": ("problem", "There is no weights version {version}."),
    "no_rollback": ("problem", "Nothing to roll back to: the shipped weights are in use."),
    "reindex_started": ("ok", "The reindex has started. Searches go on being answered from "
                              "the current build until the new one is complete."),
    "reindex_running": ("problem", "A reindex is already running; wait until it has "
                                   "finished."),
}


def notice_from_args() -> tuple[str, str] | None:
    """Return the notice named by ?notice= (kind, text), its ids checked; None if none."""
    found = NOTICES.get(request.args.get("notice", ""))
    if found is None:
        return None
    ref = request.args.get("ref", "")
    version = request.args.get("version", "")
    kind, text = found
    return kind, text.format(ref=ref if REFERENCE.fullmatch(ref) else "that request",
                             version=version if VERSION_NAME.fullmatch(version) else "?")


def back(anchor: str, notice: str, **values: Any) -> Response:
    """Return to a section of the dashboard with a notice."""
    target = url_for("admin.dashboard", notice=notice, _anchor=anchor, **values)
    return redirect(target, code=303)  # type: ignore[return-value]


def the_login() -> Login:
    """Return the login of this request (the blueprint's guard has checked it)."""
    found = current_login()
    assert found is not None, "admin views run only with a login"
    return found


@admin.before_request
def require_login() -> Any:
    """Send requests without a live login to the login form; check every POST's CSRF token."""
    if request.method == "POST":
        request.max_content_length = FORM_MAX_BYTES
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    found = current_login()
    if found is None:
        response = redirect(url_for("admin.login",
                                    notice=g.get("admin_ended") or "login_needed"), code=303)
        if request.cookies.get(COOKIE):
            clear_session_cookie(response)
        return response
    if request.method == "POST":
        check_csrf(found, request.form.get(CSRF_FIELD))
    return None


@admin.after_request
def security_headers(response: Response) -> Response:
    """Give every dashboard response a strict policy, and keep it out of every cache."""
    response.headers.update(SECURITY_HEADERS)
    response.vary.add("Cookie")
    return response


@admin.context_processor
def dashboard_globals() -> dict[str, Any]:
    """Give the dashboard's templates the login and a way to show times."""
    return {"login": g.get("admin_login"), "csrf_field": CSRF_FIELD, "when": when}


def when(value: float | str | None) -> str:
    """Return a time (epoch seconds or ISO 8601) as ``2026-11-29 14:59 UTC``."""
    if value is None or value == "":
        return "–"
    if isinstance(value, int | float):
        moment = dt.datetime.fromtimestamp(value, dt.UTC)
    else:
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# Logging in and out


def login_page(problem: str | None = None, status: int = 200) -> Response:
    """Render the login form with its CSRF cookie, and a problem to show if there is one."""
    token = login_form_token()
    body = render_template("admin/login.html", token=token, problem=problem,
                           notice=None if problem else notice_from_args(),
                           insecure=cookie_will_not_stick())
    response = make_response(body, status)
    set_login_form_cookie(response, token)
    return response


@admin.get("/login", endpoint="login")
def login_form() -> Any:
    """Show the login form (the dashboard for someone already logged in)."""
    if current_login() is not None:
        return redirect(url_for("admin.dashboard"))
    return login_page()



@admin.post("/login")
def login_submit() -> Any:
    """Log in with an editor key; a wrong or other key gets the form with a message."""
    check_login_form()
    try:
        found, token = log_in(request.form.get("key", ""))
    except LoginRefused as exc:
        page = login_page(str(exc), exc.status)
        if exc.retry_after is not None:
            page.headers["Retry-After"] = str(exc.retry_after)
        return page
    log_out()  # a session this browser had before ends: a login is always a new session
    response = redirect(url_for("admin.dashboard"), code=303)
    set_session_cookie(response, token, int(found.session.expires - found.session.created))
    return response


@admin.post("/logout")
def logout() -> Any:
    """End the session and forget its cookie."""
    log_out()
    response = redirect(url_for("admin.login", notice="logged_out"), code=303)
    clear_session_cookie(response)
    return response


# The dashboard and its forms


@admin.get("")
def dashboard() -> Any:
    """Show every section of the dashboard."""
    parts = components()
    shown = request.args.get("callbacks", "open")
    shown = shown if shown in CALLBACK_LISTS else "open"
    days = request.args.get("days", "7")
    days_shown = int(days) if days in {str(d) for d in sections.PERIODS} else 7
    report = sections.period_report(parts, days_shown, time.time())
    return render_template(
        "admin/dashboard.html", notice=notice_from_args(), callback_lists=CALLBACK_LISTS,
        periods=sections.PERIODS, days=days_shown,
        report=sections.report_section(report, days_shown), gaps=sections.gaps_section(report),
        checks=sections.checks_section(parts, dt.date.today()),
        callbacks=sections.callbacks_section(parts, shown),
        weights=sections.weights_section(parts), index=sections.index_section(parts),
    )


@admin.post("/callbacks/<reference>")
def callback_status(reference: str) -> Any:
    """Mark a callback request done (called back) or open again."""
    shown = request.form.get("shown", "open")
    shown = shown if shown in CALLBACK_LISTS else "open"
    status = request.form.get("status", "")
    try:
        stored = components().callbacks.set_status(reference, status)
    except CallbackError as exc:
        notice = "callback_unknown" if "reference" in exc.problems else "callback_invalid"
        return back("callbacks", notice, ref=reference, callbacks=shown)
    return back("callbacks", f"callback_{stored.status}", ref=stored.reference,
                callbacks=shown)


@admin.post("/weights/promote")
def promote() -> Any:
    """Make a weights version current (also one that training did not promote)."""
    version = request.form.get("version", "")
    store = components().service.weights
    try:
        store.document(version)
        store.promote(version, f"promoted on the dashboard ({the_login().who})")
    except VersionNotFoundError:
        return back("weights", "no_version", version=version)
    return back("weights", "promoted", version=version)


@admin.post("/weights/rollback")
def rollback() -> Any:
    """Make the version promoted before the current one current again."""
    try:
        previous = components().service.weights.rollback()
    except VersionNotFoundError:
        return back("weights", "no_rollback")
    return back("weights", "rolled_back", version=previous)


@admin.post("/reindex")
def reindex() -> Any:
    """Start reindexing the articles in the background."""
    try:
        start_reindex(the_login().who, strict=request.form.get("strict") == "1")
    except ReindexRunningError:
        return back("reindex", "reindex_running")
    return back("reindex", "reindex_started")


# Errors: pages of the dashboard's own, never a stack trace


def error_page(status: int, title: str, text: str) -> tuple[str, int]:
    """Render the dashboard's error page."""
    return render_template("admin/error.html", status=status, title=title, text=text,
                           insecure=cookie_will_not_stick()), status


@admin.errorhandler(CsrfError)
def csrf_error(exc: CsrfError) -> Any:
    """Refuse a form without its security token (400) or with another one (403)."""
    return error_page(exc.status, "The form could not be accepted",
                      f"{str(exc).capitalize()}. Nothing was changed: open the page again "
                      "and repeat what you did.")


@admin.errorhandler(RequestEntityTooLarge)
def too_large(exc: RequestEntityTooLarge) -> Any:
    """Refuse a form larger than the dashboard's forms can be."""
    return error_page(413, "The form is too large",
                      f"A dashboard form is at most {FORM_MAX_BYTES} bytes.")


@admin.errorhandler(TooManyRequests)
def too_many(exc: TooManyRequests) -> Any:
    """Ask a client over its rate limit to wait."""
    return error_page(429, "Too many requests",
                      f"Too many requests from this address ({exc.description}); wait a "
                      "minute and try again.")


@admin.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Any:
    """Show other HTTP errors as a page."""
    return error_page(exc.code or 500, exc.name, exc.description or exc.name)


@admin.errorhandler(KbsearchError)
def kbsearch_error(exc: KbsearchError) -> Any:
    """Show an error kbsearch raised on purpose with its message."""
    log.error("dashboard: %s", exc)
    if isinstance(exc, StoreError):
        return error_page(503, "A database cannot be used right now", str(exc))
    status = 500 if isinstance(exc, ConfigError) else 400
    return error_page(status, "That did not work", str(exc))


@admin.errorhandler(Exception)
def unexpected(exc: Exception) -> Any:
    """Log an unexpected error and say so, without details."""
    log.exception("unexpected error on %s", request.path)
    return error_page(500, "Unexpected error", "Something went wrong; it has been logged.")
