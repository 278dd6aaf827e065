"""The app factory: settings, components, blueprints, one JSON error shape, rate limits."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import (
    HTTPException,
    RequestEntityTooLarge,
    RequestURITooLarge,
    TooManyRequests,
)

from kbsearch import __version__
from kbsearch.config import Settings, load_settings
from kbsearch.errors import (
    ArticleNotFoundError,
    CallbackError,
    CallbackStoreError,
    ConversationConflictError,
    ConversationStoreError,
    DuplicateFeedbackError,
    FeedbackError,
    FeedbackStoreError,
    ForbiddenError,
    IndexNotFoundError,
    KbsearchError,
    ModelError,
    QueryError,
    SearchTimeoutError,
    UnknownAnswerError,
    UnknownSearchError,
)
from kbsearch.http.admin import admin, admin_api
from kbsearch.http.api import api, error
from kbsearch.http.context import Components, service
from kbsearch.http.contract import (
    BODY_TOO_LARGE,
    URI_TOO_LONG,
    ContractError,
    check_query_string,
)
from kbsearch.http.openapi import docs
from kbsearch.http.ratelimit import install_limits, trust_proxies
from kbsearch.http.web import SECURITY_HEADERS, web
from kbsearch.http.web.errors import error_page
from kbsearch.service import SearchService
from kbsearch.stores.keys import AuthError, TooManyFailedAuthError
from kbsearch.stores.retention import DailyPurge

log = logging.getLogger(__name__)
health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Any:
    """Report whether an index is loaded, its version and article count."""
    try:
        index = service().index()
    except IndexNotFoundError as exc:
        return error(503, "index_unavailable", str(exc))
    return jsonify(
        {
            "status": "ok",
            "version": __version__,
            "index_version": index.version,
            "articles": len(index.articles),
            "model": Path(index.manifest["model"]["name"]).name,  # no server paths
        }
    )


API_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def name_allowed_methods(response: Response) -> Response:
    """Say in ``Allow`` which methods an address takes when it answers 405 (RFC 9110)."""
    if response.status_code == 405 and "Allow" not in response.headers:
        adapter = current_app.url_map.bind_to_environ(request.environ)
        methods = adapter.allowed_methods()
        if methods:
            response.headers["Allow"] = ", ".join(sorted(methods))
    return response


def add_security_headers(response: Response) -> Response:
    """Give every response its security headers: the FAQ pages' CSP, or a closed one for JSON."""
    headers = API_SECURITY_HEADERS if _wants_json() else SECURITY_HEADERS
    for name, value in headers.items():
        response.headers.setdefault(name, value)
    return response


def check_request_line() -> None:
    """Refuse a query string that is too long (414) everywhere, or not UTF-8 (400) on the API.

    The FAQ pages read a query string that is not UTF-8 with replacement characters.
    """
    try:
        check_query_string(request.query_string)
    except ContractError:
        if _wants_json():
            raise


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def register_input_errors(app: Flask) -> None:
    """Answer a request that breaks the input contract with its code (400, 413 on API routes)."""

    @app.errorhandler(ContractError)
    def contract_error(exc: ContractError) -> Any:
        return error(400, exc.code, str(exc))

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Any:
        if not _wants_json():
            return exc
        limit = request.max_content_length
        return error(413, BODY_TOO_LARGE, f"body: larger than the {limit} bytes allowed")

    @app.errorhandler(RequestURITooLarge)
    def uri_too_long(exc: RequestURITooLarge) -> Any:
        if not _wants_json():
            return error_page(exc)
        return error(414, URI_TOO_LONG, exc.description or "the address is too long")

    @app.errorhandler(QueryError)
    def query_error(exc: QueryError) -> Any:
        return error(400, "invalid_parameter", str(exc))

    @app.errorhandler(UnknownAnswerError)
    def unknown_answer(exc: UnknownAnswerError) -> Any:
        return error(404, "unknown_answer", str(exc))


def register_unavailable(app: Flask) -> None:
    """Send 503 with a code naming the part that is missing or failing: index, model, store;
    or saying that a search ran past its time limit (with Retry-After)."""

    @app.errorhandler(IndexNotFoundError)
    def no_index(exc: IndexNotFoundError) -> Any:
        return error(503, "index_unavailable", str(exc))

    @app.errorhandler(ModelError)
    def no_model(exc: ModelError) -> Any:
        log.error("embedding model unavailable: %s", exc)
        return error(503, "model_unavailable", "the search model is not available")

    @app.errorhandler(FeedbackStoreError)
    def store_error(exc: FeedbackStoreError) -> Any:
        log.error("feedback store unavailable: %s", exc)
        return error(503, "feedback_unavailable", "feedback cannot be stored right now")

    @app.errorhandler(ConversationStoreError)
    def conversation_store(exc: ConversationStoreError) -> Any:
        log.error("conversation store unavailable: %s", exc)
        return error(503, "conversations_unavailable", "conversations cannot be kept right now")

    @app.errorhandler(CallbackStoreError)
    def callback_store_error(exc: CallbackStoreError) -> Any:
        log.error("callback store unavailable: %s", exc)
        return error(503, "callbacks_unavailable", "callback requests cannot be read right now")

    @app.errorhandler(SearchTimeoutError)
    def search_timeout(exc: SearchTimeoutError) -> Any:
        log.warning("search stopped: %s", exc)
        response, status = error(503, "search_timeout", str(exc))
        response.headers["Retry-After"] = str(math.ceil(exc.limit))
        return response, status


def register_errors(app: Flask) -> None:
    """Send every error as ``{"error": {"code", "message"}}`` on API routes."""
    register_input_errors(app)
    register_unavailable(app)

    @app.errorhandler(AuthError)
    def auth_error(exc: AuthError) -> Any:
        response, status = error(401, "invalid_api_key", str(exc))
        response.headers["WWW-Authenticate"] = 'Bearer realm="kbsearch"'
        return response, status

    @app.errorhandler(TooManyFailedAuthError)
    def too_many_failures(exc: TooManyFailedAuthError) -> Any:
        response, status = error(429, "too_many_failed_keys", str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response, status

    @app.errorhandler(ForbiddenError)
    def forbidden(exc: ForbiddenError) -> Any:
        return error(403, "forbidden", str(exc))

    @app.errorhandler(ConversationConflictError)
    def conversation_conflict(exc: ConversationConflictError) -> Any:
        return error(409, "conversation_conflict", str(exc))

    @app.errorhandler(CallbackError)
    def callback_error(exc: CallbackError) -> Any:
        if exc.problems.get("reference") == "unknown":
            return error(404, "not_found", str(exc))
        return error(400, "invalid_parameter", str(exc))

    @app.errorhandler(UnknownSearchError)
    def unknown_search(exc: UnknownSearchError) -> Any:
        return error(404, "unknown_search", str(exc))

    @app.errorhandler(DuplicateFeedbackError)
    def duplicate_feedback(exc: DuplicateFeedbackError) -> Any:
        return error(409, "duplicate_feedback", str(exc))

    @app.errorhandler(FeedbackError)
    def feedback_error(exc: FeedbackError) -> Any:
        return error(400, "invalid_feedback", str(exc))

    @app.errorhandler(ArticleNotFoundError)
    def not_found(exc: ArticleNotFoundError) -> Any:
        if not _wants_json():
            return exc.args[0], 404
        return error(404, "not_found", str(exc))

    @app.errorhandler(KbsearchError)
    def kbsearch_error(exc: KbsearchError) -> Any:
        return error(400, "bad_request", str(exc))

    @app.errorhandler(TooManyRequests)
    def too_many(exc: TooManyRequests) -> Any:
        if not _wants_json():
            return error_page(exc)
        return error(429, "rate_limited",
                     f"too many requests from this client (limit: {exc.description}); "
                     "wait as long as Retry-After says")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if not _wants_json():
            return error_page(exc)
        code = (exc.name or "error").lower().replace(" ", "_")
        return error(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unexpected error on %s", request.path)
        return error(500, "internal_error", "an unexpected error occurred; it has been logged")


def create_app(
    test_config: dict[str, Any] | None = None,
    settings: Settings | None = None,
    search_service: SearchService | None = None,
    components: Components | None = None,
) -> Flask:
    """Create the kbsearch app: its parts from ``components``, else built from the settings.

    Settings come from ``settings``, else those of ``search_service``, else the KBSEARCH_*
    environment; ``test_config`` overrides Flask's own configuration.
    """
    app = Flask(__name__, template_folder="web/templates", static_folder="web/static")
    app.config.from_mapping(MAX_CONTENT_LENGTH=1024 * 1024, JSON_SORT_KEYS=False)
    if test_config:
        app.config.from_mapping(test_config)
    if components is None:
        if settings is None:
            settings = search_service.settings if search_service is not None else load_settings()
        components = Components.build(settings, search_service)
    components.init_app(app)
    # once a day, delete what is older than its retention (KBSEARCH_RETENTION_*)
    daily = DailyPurge(lambda: Components.of(app).stores(), components.settings)
    app.before_request(check_request_line)

    @app.before_request
    def purge_daily() -> None:
        daily.run_if_due()
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_blueprint(api)
    app.register_blueprint(docs)
    app.register_blueprint(health)
    app.register_blueprint(web)
    app.register_blueprint(admin)
    app.register_blueprint(admin_api)
    register_errors(app)
    app.after_request(add_security_headers)
    app.after_request(name_allowed_methods)
    trust_proxies(app, components.settings.trusted_proxies)
    install_limits(app, components.settings)
    return app
