"""The dashboard's JSON API (blueprint ``admin_api``, ``/api/v1/admin``): reindexing.

Routes::

    POST /api/v1/admin/reindex    start a reindex in the background: 202 and the job;
                                  409 with the running job while another one runs
    GET  /api/v1/admin/reindex    the latest job: state, progress, result or error

Callers: an editor key (``Authorization: Bearer`` or ``X-API-Key``), as on every API
route, or the dashboard's own script with the login's session cookie, which must send the
login's CSRF token as ``X-CSRF-Token`` with a POST. Errors have the API's one shape.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from kbsearch.http.admin.auth import CSRF_HEADER, EDITOR, CsrfError, check_csrf, current_login
from kbsearch.http.admin.jobs import start_reindex
from kbsearch.http.context import authenticate, caller, components, contract, require_role
from kbsearch.http.contract import read_body
from kbsearch.index.reindex import ReindexRunningError
from kbsearch.stores.keys import AuthError

admin_api = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")
admin_api.before_request(authenticate)
REINDEX = "/api/v1/admin/reindex"


def json_error(status: int, code: str, message: str, **more: Any) -> tuple[Response, int]:
    """Return the API's one error shape (with more fields, such as the running job)."""
    return jsonify({"error": {"code": code, "message": message}, **more}), status


@admin_api.errorhandler(CsrfError)
def csrf_error(exc: CsrfError) -> Any:
    """Refuse a dashboard request without its CSRF token (400) or with another one (403)."""
    return json_error(exc.status, exc.code, f"{CSRF_HEADER}: {exc}")


@admin_api.after_request
def no_store(response: Response) -> Response:
    """Keep the answers out of every cache."""
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Cookie")
    return response


def editor(route: str) -> str:
    """Return who calls, as a job records it: an editor key, or a dashboard login.

    Raises AuthError (401) without either, ForbiddenError (403) for a key of another role,
    CsrfError for a dashboard POST without the login's token.
    """
    if caller().role is not None:
        return f"key {require_role((EDITOR,), route).key_id}"
    login = current_login()
    if login is None:
        raise AuthError(f"{route} needs an editor API key (Authorization: Bearer <key> or "
                        "X-API-Key) or a dashboard login")
    if request.method == "POST":
        check_csrf(login, request.headers.get(CSRF_HEADER))
    return login.who


@admin_api.post("/reindex")
def reindex_start() -> Any:
    """Start reindexing the articles in the background; 409 while another reindex runs."""
    who = editor(f"POST {REINDEX}")
    model = contract().reindex
    body = read_body(model, request) if request.get_data(cache=True) else model.model_validate({})
    try:
        job = start_reindex(who, body.strict)
    except ReindexRunningError as exc:
        return json_error(409, "reindex_running", str(exc), job=exc.job.to_json())
    response = jsonify(job.to_json())
    response.headers["Location"] = url_for("admin_api.reindex_status")
    return response, 202


@admin_api.get("/reindex")
def reindex_status() -> Any:
    """Return the latest reindex: its state, progress, and result or error."""
    editor(f"GET {REINDEX}")
    job = components().reindex.latest()
    if job is None:
        return json_error(404, "not_found", "no reindex has been started yet")
    return jsonify(job.to_json())
