"""The Flask app: an app factory, the JSON API blueprint and one JSON error shape."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import markdown as markdown_lib
import nh3
from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, TooManyRequests

from kbsearch import __version__
from kbsearch.articles import Article
from kbsearch.assist import AssistAnswer, assist
from kbsearch.bot import BotAnswer, ChatBot, Offer
from kbsearch.callbacks import STATUSES as CALLBACK_STATUSES
from kbsearch.callbacks import CallbackStore, callback_json
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
    UnknownSearchError,
)
from kbsearch.keys import PUBLIC, AuthError, Caller, KeyStore, key_from_headers
from kbsearch.openapi import openapi_document
from kbsearch.ratelimit import install_limits, trust_proxies
from kbsearch.service import SearchResponse, SearchService

log = logging.getLogger(__name__)
api = Blueprint("api", __name__, url_prefix="/api/v1")
health = Blueprint("health", __name__)
SEARCH_PARAMETERS = frozenset({"q", "k", "lang", "tags", "category"})
FEEDBACK_FIELDS = frozenset({"search_id", "article_id", "event", "position", "channel"})
BOT_FIELDS = frozenset({"conversation_id", "message", "feedback"})
ASSIST_FIELDS = frozenset({"text", "k"})
BOT_ROLES = ("bot", "agent", "editor")
ASSIST_ROLES = ("agent", "editor")
CALLBACK_ROLES = ("agent", "editor")
CALLBACK_PARAMETERS = frozenset({"status", "limit"})
CALLBACK_LISTS = (*CALLBACK_STATUSES, "all")
CALLBACK_LIMIT = 1000
MARKDOWN_EXTENSIONS = ("tables", "sane_lists", "fenced_code")
LIST_ITEM = re.compile(r" {0,3}(?:[-*+]|\d{1,3}[.)]) +\S")
FENCE = ("```", "~~~")


def service() -> SearchService:
    """Return the app's search service."""
    return current_app.extensions["kbsearch"]


def render_markdown(text: str) -> str:
    """Render article Markdown to HTML and sanitise it (nh3 / ammonia)."""
    html = markdown_lib.markdown(loosen_lists(text), extensions=list(MARKDOWN_EXTENSIONS))
    return nh3.clean(html, link_rel="noopener noreferrer")


def loosen_lists(markdown: str) -> str:
    """Put a blank line before a list that follows a paragraph line directly.

    Python-Markdown only starts a list after a blank line, so "Have ready:" followed by
    "- item" lines would otherwise run into one paragraph with literal dashes. Lines in
    fenced code blocks and the items of a list already begun are left alone.
    """
    out: list[str] = []
    in_list = fenced = False
    for line in markdown.split("\n"):
        if line.lstrip().startswith(FENCE):
            fenced = not fenced
        elif not fenced and LIST_ITEM.match(line):
            if out and out[-1].strip() and not in_list:
                out.append("")
            in_list = True
        elif not line.strip():
            in_list = False
        out.append(line)
    return "\n".join(out)


def article_url(article_id: str) -> str:
    """Return the FAQ page address of an article."""
    return f"/articles/{article_id}"


def response_json(response: SearchResponse) -> dict[str, Any]:
    """Return the JSON body of a search response."""
    return {
        "search_id": response.search_id,
        "query": response.query,
        "took_ms": response.took_ms,
        "index_version": response.index_version,
        "model_version": response.model_version,
        "results": [
            {
                "id": r.article.id,
                "title": r.article.title,
                "url": article_url(r.article.id),
                "snippet": r.snippet,
                "probability": round(r.hit.probability, 4),
                "scores": dict(r.hit.scores),
                "language": r.article.language,
                "category": r.article.category,
                "tags": list(r.article.tags),
                "updated": r.article.updated.isoformat() if r.article.updated else None,
            }
            for r in response.results
        ],
    }


def article_json(article: Article) -> dict[str, Any]:
    """Return an article's metadata, Markdown and sanitised HTML."""
    meta = article.to_metadata()
    for private in ("path", "content_hash"):
        meta.pop(private)
    return {
        **meta,
        "url": article_url(article.id),
        "markdown": article.body,
        "html": render_markdown(article.body),
    }


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


@api.before_request
def authenticate() -> None:
    """Identify the caller by API key (none: the public); raise AuthError for a bad key."""
    g.caller = current_app.extensions["kbsearch_keys"].authenticate(
        key_from_headers(request.headers)
    )


def error(status: int, code: str, message: str) -> tuple[Any, int]:
    """Return the one JSON error shape with a status code."""
    return jsonify({"error": {"code": code, "message": message}}), status


def require_role(roles: tuple[str, ...], route: str) -> Caller:
    """Return the caller if its key has one of ``roles``; raise AuthError or ForbiddenError."""
    who = caller()
    if who.role is None:
        raise AuthError(f"{route} needs an API key with role {' or '.join(roles)}")
    if who.role not in roles:
        raise ForbiddenError(f"{route} is for roles {' and '.join(roles)}, not {who.role}")
    return who


def json_body(fields: frozenset[str], expected: str) -> dict[str, Any]:
    """Return the request's JSON object; raise QueryError for another body or unknown fields."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise QueryError("body", f"send a JSON object with {expected}")
    unknown = sorted(set(body) - fields)
    if unknown:
        raise QueryError(unknown[0], f"unknown field(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(fields))}")
    return body


@api.get("/search")
def search() -> Any:
    """Search published articles (internal ones too for agent and editor keys)."""
    unknown = sorted(set(request.args) - SEARCH_PARAMETERS)
    if unknown:
        return error(
            400, "unknown_parameter",
            f"unknown parameter(s): {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(SEARCH_PARAMETERS))}",
        )
    response = service().search(
        request.args.get("q"),
        caller=caller(),
        client=client_identity(),
        k=request.args.get("k"),
        language=request.args.get("lang"),
        tags=request.args.get("tags"),
        category=request.args.get("category"),
    )
    return jsonify(response_json(response))


@api.post("/feedback")
def feedback() -> Any:
    """Record feedback on a result of a logged search (click, helpful, resolved, ...)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error(400, "invalid_body", "send a JSON object with search_id, article_id, "
                     "event and optionally position and channel")
    unknown = sorted(set(body) - FEEDBACK_FIELDS)
    if unknown:
        return error(400, "unknown_field", f"unknown field(s): {', '.join(unknown)}; "
                     f"allowed: {', '.join(sorted(FEEDBACK_FIELDS))}")
    stored = service().record_feedback(
        body.get("search_id"), body.get("article_id"), body.get("event"),
        body.get("position"), body.get("channel", "api"), client_identity(),
    )
    return jsonify({
        "search_id": stored.search_id, "article_id": stored.article_id,
        "event": stored.event, "position": stored.position, "channel": stored.channel,
    }), 201


def offer_json(offer: Offer, answers: dict[str, str]) -> dict[str, Any]:
    """Return an article offered by the bot: title, short answer, address, probability."""
    return {
        "id": offer.article_id,
        "title": offer.title,
        "short_answer": answers.get(offer.article_id, ""),
        "url": article_url(offer.article_id),
        "probability": offer.probability,
    }


def bot_json(answer: BotAnswer) -> dict[str, Any]:
    """Return the JSON body of a chatbot turn."""
    best, *others = answer.offers or (None,)
    return {
        "conversation_id": answer.conversation.id,
        "turn": len(answer.conversation.turns),
        "new_conversation": answer.new_conversation,
        "search_id": answer.search_id,
        "article": offer_json(best, answer.answers) if best else None,
        "probability": best.probability if best else None,
        "alternatives": [offer_json(o, answer.answers) for o in others if o],
        "handoff": {
            "recommended": answer.recommended,
            "reasons": [{"code": r.code, "detail": r.detail} for r in answer.reasons],
            "summary": answer.summary,
        },
    }


def assist_json(answer: AssistAnswer) -> dict[str, Any]:
    """Return the JSON body of an agent-assist answer."""
    sentences = answer.request.sentences

    def sentence(i: int) -> dict[str, Any]:
        return {"text": sentences[i].text, "start": sentences[i].start, "end": sentences[i].end}

    return {
        "search_id": answer.search_id,
        "request": {
            "query": answer.request.query,
            "sentences": [sentence(i) for i in answer.request.picked],
            "removed": answer.request.removed,
        },
        "results": [
            {
                "id": r.article.id,
                "title": r.article.title,
                "url": article_url(r.article.id),
                "probability": round(r.hit.probability, 4),
                "audience": r.article.audience,
                "language": r.article.language,
                "category": r.article.category,
                "snippet": r.snippet,
                "matched_sentences": [
                    {**sentence(i), "similarity": score}
                    for i, score in answer.matches.get(r.article.id, [])
                ],
            }
            for r in answer.results
        ],
    }


@api.post("/bot/turn")
def bot_turn() -> Any:
    """Answer one chatbot turn and say whether to hand the customer to a human."""
    who = require_role(BOT_ROLES, "POST /api/v1/bot/turn")
    body = json_body(BOT_FIELDS, "conversation_id, message and optionally feedback")
    bot: ChatBot = current_app.extensions["kbsearch_bot"]
    answer = bot.turn(body.get("conversation_id"), body.get("message"), body.get("feedback"),
                      caller=who, client=client_identity())
    return jsonify(bot_json(answer))


@api.post("/assist")
def assist_route() -> Any:
    """Find the request in an e-mail, ticket or transcript and return articles for the agent."""
    who = require_role(ASSIST_ROLES, "POST /api/v1/assist")
    body = json_body(ASSIST_FIELDS, "text (up to the configured length) and optionally k")
    settings = service().settings
    k = body.get("k", settings.assist_results)
    answer = assist(service(), body.get("text"), who, client_identity(), k,
                    settings.assist_max_chars)
    return jsonify(assist_json(answer))


@api.get("/callbacks")
def list_callbacks() -> Any:
    """List the callback requests customers left on the FAQ page, newest first (agents)."""
    require_role(CALLBACK_ROLES, "GET /api/v1/callbacks")
    unknown = sorted(set(request.args) - CALLBACK_PARAMETERS)
    if unknown:
        raise QueryError(unknown[0], f"unknown parameter(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(CALLBACK_PARAMETERS))}")
    status = request.args.get("status", "open")
    if status not in CALLBACK_LISTS:
        raise QueryError("status", f"must be one of {', '.join(CALLBACK_LISTS)}, got {status!r}")
    raw_limit = request.args.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= CALLBACK_LIMIT:
        raise QueryError("limit", f"must be a whole number from 1 to {CALLBACK_LIMIT}, "
                         f"got {raw_limit!r}")
    stored = callback_store().recent(int(raw_limit), None if status == "all" else status)
    return jsonify({"callbacks": [callback_json(s) for s in stored]})


@api.post("/callbacks/<reference>")
def update_callback(reference: str) -> Any:
    """Mark a callback request done (called back) or open again (agents)."""
    require_role(CALLBACK_ROLES, "POST /api/v1/callbacks/<reference>")
    body = json_body(frozenset({"status"}), "status (open or done)")
    return jsonify(callback_json(callback_store().set_status(reference, body.get("status"))))


def callback_store() -> CallbackStore:
    """Return the app's store of callback requests."""
    return current_app.extensions["kbsearch_callbacks"]


@api.get("/articles/<article_id>")
def get_article(article_id: str) -> Any:
    """Return one published article the caller may see: metadata, Markdown, HTML."""
    return jsonify(article_json(service().article(article_id, caller=caller())))


@api.get("/openapi.json")
def openapi() -> Any:
    """Return the OpenAPI 3 document of every route."""
    return jsonify(openapi_document(__version__))


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
            "model": index.manifest["model"]["name"],
        }
    )


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def register_errors(app: Flask) -> None:
    """Send every error as ``{"error": {"code", "message"}}`` on API routes."""

    @app.errorhandler(QueryError)
    def query_error(exc: QueryError) -> Any:
        return error(400, "invalid_parameter", str(exc))

    @app.errorhandler(AuthError)
    def auth_error(exc: AuthError) -> Any:
        response, status = error(401, "invalid_api_key", str(exc))
        response.headers["WWW-Authenticate"] = 'Bearer realm="kbsearch"'
        return response, status

    @app.errorhandler(ForbiddenError)
    def forbidden(exc: ForbiddenError) -> Any:
        return error(403, "forbidden", str(exc))

    @app.errorhandler(ConversationConflictError)
    def conversation_conflict(exc: ConversationConflictError) -> Any:
        return error(409, "conversation_conflict", str(exc))

    @app.errorhandler(ConversationStoreError)
    def conversation_store(exc: ConversationStoreError) -> Any:
        log.error("conversation store unavailable: %s", exc)
        return error(503, "conversations_unavailable", "conversations cannot be kept right now")

    @app.errorhandler(CallbackError)
    def callback_error(exc: CallbackError) -> Any:
        if exc.problems.get("reference") == "unknown":
            return error(404, "not_found", str(exc))
        return error(400, "invalid_parameter", str(exc))

    @app.errorhandler(CallbackStoreError)
    def callback_store_error(exc: CallbackStoreError) -> Any:
        log.error("callback store unavailable: %s", exc)
        return error(503, "callbacks_unavailable", "callback requests cannot be read right now")

    @app.errorhandler(UnknownSearchError)
    def unknown_search(exc: UnknownSearchError) -> Any:
        return error(404, "unknown_search", str(exc))

    @app.errorhandler(DuplicateFeedbackError)
    def duplicate_feedback(exc: DuplicateFeedbackError) -> Any:
        return error(409, "duplicate_feedback", str(exc))

    @app.errorhandler(FeedbackError)
    def feedback_error(exc: FeedbackError) -> Any:
        return error(400, "invalid_feedback", str(exc))

    @app.errorhandler(FeedbackStoreError)
    def store_error(exc: FeedbackStoreError) -> Any:
        log.error("feedback store unavailable: %s", exc)
        return error(503, "feedback_unavailable", "feedback cannot be stored right now")

    @app.errorhandler(ArticleNotFoundError)
    def not_found(exc: ArticleNotFoundError) -> Any:
        if not _wants_json():
            return exc.args[0], 404
        return error(404, "not_found", str(exc))

    @app.errorhandler(IndexNotFoundError)
    def no_index(exc: IndexNotFoundError) -> Any:
        return error(503, "index_unavailable", str(exc))

    @app.errorhandler(ModelError)
    def no_model(exc: ModelError) -> Any:
        log.error("embedding model unavailable: %s", exc)
        return error(503, "model_unavailable", "the search model is not available")

    @app.errorhandler(KbsearchError)
    def kbsearch_error(exc: KbsearchError) -> Any:
        return error(400, "bad_request", str(exc))

    @app.errorhandler(TooManyRequests)
    def too_many(exc: TooManyRequests) -> Any:
        if not _wants_json():
            return exc
        return error(429, "rate_limited",
                     f"too many requests from this client (limit: {exc.description}); "
                     "wait as long as Retry-After says")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if not _wants_json():
            return exc
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
) -> Flask:
    """Create the kbsearch app: settings from KBSEARCH_* first, then the test override."""
    app = Flask(__name__, template_folder="web/templates", static_folder="web/static")
    app.config.from_mapping(MAX_CONTENT_LENGTH=1024 * 1024, JSON_SORT_KEYS=False)
    if test_config:
        app.config.from_mapping(test_config)
    settings = settings or load_settings()
    app.extensions["kbsearch"] = search_service or SearchService(settings)
    keys_settings = search_service.settings if search_service is not None else settings
    app.extensions["kbsearch_keys"] = KeyStore(keys_settings.keys_file, keys_settings.api_keys)
    app.extensions["kbsearch_callbacks"] = CallbackStore(keys_settings.channels_db)
    app.extensions["kbsearch_bot"] = ChatBot.from_settings(
        app.extensions["kbsearch"], keys_settings
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    from kbsearch.web import web

    app.register_blueprint(api)
    app.register_blueprint(health)
    app.register_blueprint(web)
    register_errors(app)
    trust_proxies(app, keys_settings.trusted_proxies)
    app.extensions["kbsearch_limiter"] = install_limits(app, keys_settings)
    return app
