"""The OpenAPI 3 document of the kbsearch HTTP API."""

from __future__ import annotations

from typing import Any

from kbsearch.channels.bot import FEEDBACK_EVENTS, REASONS
from kbsearch.stores.callbacks import TIME_SLOTS

ERROR = {"$ref": "#/components/schemas/Error"}
BOT_EVENTS = list(FEEDBACK_EVENTS)
HTML = {"description": "HTML page", "content": {"text/html": {}}}
RATE_LIMITED = {
    "description": "Too many requests from this client (KBSEARCH_RATE_LIMIT per address, "
                   "KBSEARCH_RATE_LIMIT_KEYED per key); wait for Retry-After seconds",
    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    "content": {"application/json": {"schema": ERROR}},
}
ARTICLE_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
UI = {"name": "ui", "in": "query", "required": False,
      "schema": {"type": "string", "enum": ["de", "en"]},
      "description": "Interface language of the FAQ pages (remembered in a cookie)"}
SEARCH_CONTEXT = [
    {"name": "s", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "search_id of the search the article was opened from"},
    {"name": "p", "in": "query", "required": False, "schema": {"type": "integer"},
     "description": "Position (1-based) the article was shown at"},
]
REASON_CODES = list(REASONS)


def _error_responses(*codes: int) -> dict[str, Any]:
    text = {400: "Invalid parameter", 401: "No, unknown or revoked API key",
            403: "The key's role may not use this route", 404: "Not found",
            409: "Already recorded, or a concurrent turn of the same conversation",
            503: "Index, model or feedback store unavailable"}
    return {
        str(code): {
            "description": text[code],
            "content": {"application/json": {"schema": ERROR}},
        }
        for code in codes
    }


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description}


def openapi_document(version: str) -> dict[str, Any]:
    """Return the OpenAPI 3.0 description of every route."""
    document = _document(version)
    for path, operations in document["paths"].items():
        if path == "/healthz":
            continue  # never rate limited
        for operation in operations.values():
            operation["responses"].setdefault("429", RATE_LIMITED if path.startswith("/api/")
                                              else {"description": "Rate limited (HTML page)"})
    return document


def _document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "kbsearch",
            "version": version,
            "description": "Hybrid knowledge-base search for customer service. Every error "
                           "has the shape {\"error\": {\"code\", \"message\"}}.",
        },
        "paths": {
            "/api/v1/search": {
                "get": {
                    "summary": "Search published articles, ranked by probability",
                    "description": "Without an API key only public articles; with an agent "
                                   "or editor key internal articles too.",
                    "parameters": [
                        _query("q", {"type": "string", "maxLength": 1000},
                               "The question or words to search for.", required=True),
                        _query("k", {"type": "integer", "minimum": 1, "maximum": 100,
                                     "default": 10}, "Number of results."),
                        _query("lang", {"type": "string", "enum": ["de", "en"]},
                               "Only articles in this language."),
                        _query("tags", {"type": "string"},
                               "Comma-separated tags an article must all have."),
                        _query("category", {"type": "string"}, "Only this category."),
                    ],
                    "responses": {
                        "200": {
                            "description": "Ranked results",
                            "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/SearchResponse"}}},
                        },
                        **_error_responses(400, 401, 503),
                    },
                }
            },
            "/api/v1/feedback": {
                "post": {
                    "summary": "Record feedback on one result of a search",
                    "description": "The search must have been answered by this service (its "
                                   "search_id) and the article must have been among its "
                                   "results. Each event is stored once per search and "
                                   "article; a repeat gets 409.",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Feedback"}}}},
                    "responses": {
                        "201": {"description": "Stored", "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Feedback"}}}},
                        **_error_responses(400, 401, 404, 409, 503),
                    },
                }
            },
            "/api/v1/bot/turn": {
                "post": {
                    "summary": "One chatbot turn: the best article and whether to hand off",
                    "description": "For keys with role bot, agent or editor. The conversation "
                                   "is kept server-side per key and conversation_id and "
                                   "forgotten after the configured idle time. feedback is "
                                   "the customer's verdict on the last answer (by default on "
                                   "its best article); negative feedback without a message "
                                   "offers the next best article. handoff.recommended says "
                                   "to pass the customer to a human, with reasons and a "
                                   "summary for the agent.",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/BotTurn"}}}},
                    "responses": {
                        "200": {"description": "The bot's answer", "content": {
                            "application/json": {"schema": {
                                "$ref": "#/components/schemas/BotAnswer"}}}},
                        **_error_responses(400, 401, 403, 409, 503),
                    },
                }
            },
            "/api/v1/assist": {
                "post": {
                    "summary": "Agent assist: articles for an e-mail, ticket or transcript",
                    "description": "For keys with role agent or editor; internal articles "
                                   "included. Greetings, signatures, quoted history and the "
                                   "agent's own lines are set aside; the request is searched "
                                   "and each article comes with the sentences of the text "
                                   "that matched it (character offsets into the text sent).",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/AssistRequest"}}}},
                    "responses": {
                        "200": {"description": "Articles by probability", "content": {
                            "application/json": {"schema": {
                                "$ref": "#/components/schemas/AssistAnswer"}}}},
                        **_error_responses(400, 401, 403, 503),
                    },
                }
            },
            "/api/v1/callbacks": {
                "get": {
                    "summary": "Callback requests from the FAQ page, newest first (agent, editor)",
                    "parameters": [
                        _query("status", {"type": "string", "enum": ["open", "done", "all"],
                                          "default": "open"}, "Which requests"),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000,
                                         "default": 100}, "At most this many"),
                    ],
                    "responses": {
                        "200": {"description": "The requests", "content": {"application/json": {
                            "schema": {"type": "object", "properties": {"callbacks": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Callback"}}}}}}},
                        **_error_responses(400, 401, 403, 503),
                    },
                }
            },
            "/api/v1/callbacks/{reference}": {
                "post": {
                    "summary": "Mark a callback request done or open again (agent, editor)",
                    "parameters": [{"name": "reference", "in": "path", "required": True,
                                    "schema": {"type": "string", "pattern": "^RR-[A-Z2-9]{6}$"}}],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"type": "object", "required": ["status"], "properties": {
                            "status": {"type": "string", "enum": ["open", "done"]}}}}}},
                    "responses": {
                        "200": {"description": "The request as now stored",
                                "content": {"application/json": {
                                    "schema": {"$ref": "#/components/schemas/Callback"}}}},
                        **_error_responses(400, 401, 403, 404, 503),
                    },
                }
            },
            "/api/v1/articles/{id}": {
                "get": {
                    "summary": "One article: metadata, Markdown and sanitised HTML",
                    "parameters": [{"name": "id", "in": "path", "required": True,
                                    "schema": {"type": "string"}}],
                    "responses": {
                        "200": {
                            "description": "The article",
                            "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/Article"}}},
                        },
                        **_error_responses(401, 404, 503),
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {"summary": "This document",
                        "responses": {"200": {"description": "OpenAPI 3 document"}}}
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness and the loaded index",
                    "responses": {
                        "200": {"description": "Serving",
                                "content": {"application/json": {
                                    "schema": {"$ref": "#/components/schemas/Health"}}}},
                        **_error_responses(503),
                    },
                }
            },
            "/": {"get": {"summary": "Self-service FAQ page (HTML): search box, results, topics",
                          "parameters": [_query("q", {"type": "string"}, "The question"), UI],
                          "responses": {"200": HTML, "400": {"description": "Bad query"}}}},
            "/articles/{id}": {
                "get": {
                    "summary": "Article page (HTML); opened from a search, records a click",
                    "parameters": [ARTICLE_ID, *SEARCH_CONTEXT, UI],
                    "responses": {"200": HTML, "404": {"description": "Not found"}},
                }
            },
            "/articles/{id}/vote": {
                "get": {"summary": "Redirect to the article page",
                        "parameters": [ARTICLE_ID],
                        "responses": {"302": {"description": "To /articles/{id}"}}},
                "post": {
                    "summary": "\"Did this article help?\" from the FAQ page (form post)",
                    "parameters": [ARTICLE_ID],
                    "requestBody": {"required": True, "content": {
                        "application/x-www-form-urlencoded": {"schema": {
                            "type": "object", "required": ["vote"],
                            "properties": {
                                "vote": {"type": "string", "enum": ["helpful", "not_helpful"]},
                                "s": {"type": "string", "description": "search_id"},
                                "p": {"type": "integer", "description": "position shown"},
                                "partial": {"type": "string", "enum": ["1"],
                                            "description": "Return the outcome alone"},
                            }}}}},
                    "responses": {"200": HTML, "400": {"description": "No valid vote"},
                                  "404": {"description": "Not found"},
                                  "503": {"description": "Vote not stored"}},
                },
            },
            "/suche/fragment": {
                "get": {"summary": "FAQ search results alone, for search as you type (HTML)",
                        "parameters": [_query("q", {"type": "string"}, "The question"), UI],
                        "responses": {"200": HTML, "400": {"description": "Bad query"},
                                      "503": {"description": "Search unavailable"}}},
            },
            "/themen/{category}": {
                "get": {"summary": "The public articles of one topic (HTML)",
                        "parameters": [{"name": "category", "in": "path", "required": True,
                                        "schema": {"type": "string"}}, UI],
                        "responses": {"200": HTML,
                                      "404": {"description": "No such topic"}}},
            },
            "/rueckruf": {
                "get": {"summary": "Callback form (HTML), started from a search or article",
                        "parameters": [_query("q", {"type": "string"}, "The search"),
                                       _query("article", {"type": "string"}, "Article id"),
                                       UI],
                        "responses": {"200": HTML}},
                "post": {
                    "summary": "Store a callback request (form post)",
                    "requestBody": {"required": True, "content": {
                        "application/x-www-form-urlencoded": {"schema": {
                            "type": "object",
                            "required": ["name", "phone", "preferred_time", "description"],
                            "properties": {
                                "name": {"type": "string", "maxLength": 100},
                                "phone": {"type": "string"},
                                "preferred_time": {"type": "string", "enum": list(TIME_SLOTS)},
                                "description": {"type": "string", "maxLength": 500},
                                "context": {"type": "string"},
                            }}}}},
                    "responses": {"303": {"description": "To /rueckruf/danke"},
                                  "400": {"description": "Form with a message per bad field"},
                                  "503": {"description": "Request not stored"}},
                },
            },
            "/rueckruf/danke": {
                "get": {"summary": "Confirmation of a callback request (HTML)",
                        "parameters": [_query("nr", {"type": "string"}, "Reference RR-XXXXXX"),
                                       _query("zeit", {"type": "string"}, "Time slot"), UI],
                        "responses": {"200": HTML,
                                      "302": {"description": "No valid reference: to the form"}}},
            },
        },
        "security": [{}, {"bearer": []}, {"apiKey": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "An API key (kbs_...); roles bot, agent, editor"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": {
                "Callback": {
                    "type": "object",
                    "properties": {
                        "reference": {"type": "string"},
                        "created": {"type": "string", "format": "date-time"},
                        "status": {"type": "string", "enum": ["open", "done"]},
                        "name": {"type": "string"}, "phone": {"type": "string"},
                        "preferred_time": {"type": "string", "enum": list(TIME_SLOTS)},
                        "language": {"type": "string", "enum": ["de", "en"]},
                        "description": {"type": "string"},
                        "context": {"type": "string",
                                    "description": "search: <query> or article: <id>"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"},
                                       "message": {"type": "string"}},
                    }},
                },
                "Hit": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"}, "title": {"type": "string"},
                        "url": {"type": "string"}, "snippet": {"type": "string"},
                        "probability": {"type": "number", "minimum": 0, "maximum": 1},
                        "scores": {"type": "object",
                                   "additionalProperties": {"type": "number"}},
                        "language": {"type": "string"}, "category": {"type": "string"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "updated": {"type": "string", "format": "date", "nullable": True},
                    },
                },
                "SearchResponse": {
                    "type": "object",
                    "properties": {
                        "search_id": {"type": "string"}, "query": {"type": "string"},
                        "took_ms": {"type": "number"}, "index_version": {"type": "string"},
                        "model_version": {"type": "string"},
                        "results": {"type": "array",
                                    "items": {"$ref": "#/components/schemas/Hit"}},
                    },
                },
                "Feedback": {
                    "type": "object",
                    "required": ["search_id", "article_id", "event"],
                    "additionalProperties": False,
                    "properties": {
                        "search_id": {"type": "string"},
                        "article_id": {"type": "string"},
                        "event": {"type": "string", "enum": [
                            "impression", "click", "helpful", "not_helpful", "resolved",
                            "escalated"]},
                        "position": {"type": "integer", "minimum": 1,
                                     "description": "1-based; defaults to where it was shown"},
                        "channel": {"type": "string", "enum": ["api", "faq", "bot", "agent"],
                                    "default": "api"},
                    },
                },
                "BotTurn": {
                    "type": "object",
                    "required": ["conversation_id"],
                    "additionalProperties": False,
                    "properties": {
                        "conversation_id": {"type": "string", "pattern":
                                            "^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"},
                        "message": {"type": "string", "maxLength": 1000,
                                    "description": "Required unless feedback is given"},
                        "feedback": {"oneOf": [
                            {"type": "string", "enum": BOT_EVENTS},
                            {"type": "object", "required": ["event"],
                             "additionalProperties": False,
                             "properties": {"event": {"type": "string", "enum": BOT_EVENTS},
                                            "article_id": {"type": "string"}}},
                        ]},
                    },
                },
                "BotArticle": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"}, "title": {"type": "string"},
                        "short_answer": {"type": "string"}, "url": {"type": "string"},
                        "probability": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                },
                "BotAnswer": {
                    "type": "object",
                    "properties": {
                        "conversation_id": {"type": "string"},
                        "turn": {"type": "integer"},
                        "new_conversation": {"type": "boolean"},
                        "search_id": {"type": "string", "nullable": True},
                        "article": {"allOf": [{"$ref": "#/components/schemas/BotArticle"}],
                                    "nullable": True},
                        "probability": {"type": "number", "nullable": True},
                        "alternatives": {"type": "array", "maxItems": 2, "items": {
                            "$ref": "#/components/schemas/BotArticle"}},
                        "handoff": {
                            "type": "object",
                            "properties": {
                                "recommended": {"type": "boolean"},
                                "reasons": {"type": "array", "items": {
                                    "type": "object", "properties": {
                                        "code": {"type": "string", "enum": REASON_CODES},
                                        "detail": {"type": "string"}}}},
                                "summary": {"type": "object", "nullable": True, "properties": {
                                    "questions": {"type": "array",
                                                  "items": {"type": "string"}},
                                    "articles_tried": {"type": "array",
                                                       "items": {"type": "object"}},
                                    "feedback": {"type": "array",
                                                 "items": {"type": "object"}},
                                    "reasons": {"type": "array",
                                                "items": {"type": "string"}},
                                    "text": {"type": "string"}}},
                            },
                        },
                    },
                },
                "AssistRequest": {
                    "type": "object",
                    "required": ["text"],
                    "additionalProperties": False,
                    "properties": {
                        "text": {"type": "string", "maxLength": 20000},
                        "k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5},
                    },
                },
                "Span": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}, "start": {"type": "integer"},
                                   "end": {"type": "integer"},
                                   "similarity": {"type": "number"}},
                },
                "AssistAnswer": {
                    "type": "object",
                    "properties": {
                        "search_id": {"type": "string"},
                        "request": {"type": "object", "properties": {
                            "query": {"type": "string"},
                            "sentences": {"type": "array",
                                          "items": {"$ref": "#/components/schemas/Span"}},
                            "removed": {"type": "object", "additionalProperties": {
                                "type": "integer"}}}},
                        "results": {"type": "array", "items": {"allOf": [
                            {"$ref": "#/components/schemas/Hit"},
                            {"type": "object", "properties": {
                                "audience": {"type": "string"},
                                "matched_sentences": {"type": "array", "items": {
                                    "$ref": "#/components/schemas/Span"}}}},
                        ]}},
                    },
                },
                "Article": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"}, "title": {"type": "string"},
                        "language": {"type": "string"}, "category": {"type": "string"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "audience": {"type": "string"}, "status": {"type": "string"},
                        "updated": {"type": "string", "nullable": True},
                        "review_by": {"type": "string", "nullable": True},
                        "translation_of": {"type": "string", "nullable": True},
                        "related": {"type": "array", "items": {"type": "string"}},
                        "url": {"type": "string"}, "markdown": {"type": "string"},
                        "html": {"type": "string"},
                    },
                },
                "Health": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string"}, "version": {"type": "string"},
                        "index_version": {"type": "string"}, "articles": {"type": "integer"},
                        "model": {"type": "string"},
                    },
                },
            }
        },
    }
