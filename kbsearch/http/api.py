"""The JSON API blueprint (``/api/v1``): search, articles, feedback, bot, assist, callbacks."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from kbsearch.channels.assist import AssistAnswer, assist
from kbsearch.channels.bot import BotAnswer, Offer
from kbsearch.content.articles import Article, article_url
from kbsearch.content.markdown import render_markdown
from kbsearch.errors import QueryError
from kbsearch.http.context import (
    authenticate,
    callback_store,
    caller,
    client_identity,
    components,
    contract,
    require_role,
    service,
)
from kbsearch.http.contract import read_body, read_query
from kbsearch.stores.callbacks import callback_json
from kbsearch.stores.feedback import channel_of

api = Blueprint("api", __name__, url_prefix="/api/v1")
api.before_request(authenticate)
BOT_ROLES = ("bot", "agent", "editor")
ASSIST_ROLES = ("agent", "editor")
CALLBACK_ROLES = ("agent", "editor")


def article_json(article: Article, remote_images: bool = False) -> dict[str, Any]:
    """Return an article's metadata, Markdown and sanitised HTML (KBSEARCH_REMOTE_IMAGES)."""
    meta = article.to_metadata()
    for private in ("path", "content_hash"):
        meta.pop(private)
    return {
        **meta,
        "url": article_url(article.id),
        "markdown": article.body,
        "html": render_markdown(article.body, remote_images),
    }


def error(status: int, code: str, message: str) -> tuple[Any, int]:
    """Return the one JSON error shape with a status code."""
    return jsonify({"error": {"code": code, "message": message}}), status


@api.get("/search")
def search() -> Any:
    """Search published articles (internal ones too for agent and editor keys)."""
    query = read_query(contract().search, request.args)
    response = service().search(
        query.q, channel=channel_of(caller()), caller=caller(), client=client_identity(), k=query.k,
        language=query.lang, tags=query.tags, category=query.category,
    )
    return jsonify(response.to_json())


@api.post("/feedback")
def feedback() -> Any:
    """Record feedback on a result of a logged search (click, helpful, resolved, ...)."""
    body = read_body(contract().feedback, request)
    who = caller()
    channel = channel_of(who)
    if body.channel is not None and body.channel != channel:
        raise QueryError("channel", f"follows from the API key: {channel} for this caller, "
                                    f"not {body.channel}")
    stored = service().record_feedback(
        body.search_id, body.article_id, body.event, body.position, channel,
        client_identity(), caller=who, token=body.feedback_token,
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
    body = read_body(contract().bot_turn, request)
    verdict = body.feedback.model_dump(exclude_none=True) if body.feedback else None
    answer = components().bot.turn(body.conversation_id, body.message, verdict,
                                   caller=who, client=client_identity())
    return jsonify(bot_json(answer))


@api.post("/assist")
def assist_route() -> Any:
    """Find the request in an e-mail, ticket or transcript and return articles for the agent."""
    who = require_role(ASSIST_ROLES, "POST /api/v1/assist")
    body = read_body(contract().assist, request)
    answer = assist(service(), body.text, who, client_identity(), body.k,
                    service().settings.assist_max_chars)
    return jsonify(assist_json(answer))


@api.get("/callbacks")
def list_callbacks() -> Any:
    """List the callback requests customers left on the FAQ page, newest first (agents)."""
    require_role(CALLBACK_ROLES, "GET /api/v1/callbacks")
    query = read_query(contract().callbacks, request.args)
    status = None if query.status == "all" else query.status
    stored = callback_store().recent(query.limit, status)
    return jsonify({"callbacks": [callback_json(s) for s in stored]})


@api.post("/callbacks/<reference>")
def update_callback(reference: str) -> Any:
    """Mark a callback request done (called back) or open again (agents)."""
    require_role(CALLBACK_ROLES, "POST /api/v1/callbacks/<reference>")
    body = read_body(contract().callback_update, request)
    return jsonify(callback_json(callback_store().set_status(reference, body.status)))


@api.get("/articles/<article_id>")
def get_article(article_id: str) -> Any:
    """Return one published article the caller may see: metadata, Markdown, HTML."""
    keep = service().settings.remote_images == "keep"
    return jsonify(article_json(service().article(article_id, caller=caller()), keep))
