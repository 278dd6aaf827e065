"""The JSON API blueprint (``/api/v1``): search, articles, feedback, bot, assist, callbacks."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request

from kbsearch import __version__
from kbsearch.channels.assist import AssistAnswer, assist
from kbsearch.channels.bot import BotAnswer, Offer
from kbsearch.content.articles import Article, article_url
from kbsearch.content.markdown import render_markdown
from kbsearch.errors import QueryError
from kbsearch.http.context import (
    callback_store,
    caller,
    client_identity,
    components,
    require_role,
    service,
)
from kbsearch.http.openapi import openapi_document
from kbsearch.stores.callbacks import STATUSES as CALLBACK_STATUSES
from kbsearch.stores.callbacks import callback_json
from kbsearch.stores.keys import key_from_headers

api = Blueprint("api", __name__, url_prefix="/api/v1")
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


@api.before_request
def authenticate() -> None:
    """Identify the caller by API key (none: the public); raise AuthError for a bad key."""
    g.caller = components().keys.authenticate(key_from_headers(request.headers))


def error(status: int, code: str, message: str) -> tuple[Any, int]:
    """Return the one JSON error shape with a status code."""
    return jsonify({"error": {"code": code, "message": message}}), status


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
    return jsonify(response.to_json())


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
    answer = components().bot.turn(body.get("conversation_id"), body.get("message"),
                                   body.get("feedback"), caller=who, client=client_identity())
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


@api.get("/articles/<article_id>")
def get_article(article_id: str) -> Any:
    """Return one published article the caller may see: metadata, Markdown, HTML."""
    return jsonify(article_json(service().article(article_id, caller=caller())))


@api.get("/openapi.json")
def openapi() -> Any:
    """Return the OpenAPI 3 document of every route."""
    return jsonify(openapi_document(__version__))
