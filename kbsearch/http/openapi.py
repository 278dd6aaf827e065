"""The OpenAPI 3.1 document of every route, generated from the models that check the requests.

Request bodies and query parameters come from the app's :class:`~kbsearch.http.contract.Contract`
(so their limits are the app's settings), answers from :mod:`kbsearch.http.responses`. The FAQ
pages answer with HTML; their parameters are described here from the constants their code
uses; so are the dashboard's. The document is served by its own blueprint
(``GET /api/v1/openapi.json``), which sits above the API, FAQ and dashboard blueprints
because it describes them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from kbsearch import __version__
from kbsearch.channels.faq import VOTE_EVENTS
from kbsearch.config import Settings
from kbsearch.http import responses
from kbsearch.http.admin.auth import LOGIN_COOKIE
from kbsearch.http.admin.views import FORM_MAX_BYTES as ADMIN_FORM_MAX_BYTES
from kbsearch.http.context import authenticate, components
from kbsearch.http.contract import CALLBACK_LISTS, MAX_JSON_DEPTH, Contract
from kbsearch.http.web import FORM_MAX_BYTES
from kbsearch.http.web.texts import UI_LANGUAGES
from kbsearch.stores.callbacks import (
    DESCRIPTION_MAX,
    NAME_MAX,
    PHONE_DIGITS,
    REFERENCE,
    TIME_SLOTS,
    text_pattern,
)
from kbsearch.stores.callbacks import STATUSES as CALLBACK_STATUSES

docs = Blueprint("docs", __name__, url_prefix="/api/v1")
docs.before_request(authenticate)

SCHEMAS = "#/components/schemas/"
ERROR = {"$ref": SCHEMAS + "Error"}
ERRORS = {
    400: "The request breaks the input contract (invalid_body, unknown_parameter, "
         "invalid_parameter) or a rule of the service (invalid_parameter, invalid_feedback)",
    401: "No, unknown or revoked API key (invalid_api_key)",
    403: "The key's role may not use this route (forbidden)",
    404: "Not found (not_found, unknown_search; unknown_answer: the bot's feedback names an "
         "answer or article the conversation does not have)",
    409: "Already recorded (duplicate_feedback), or a concurrent turn of the same "
         "conversation (conversation_conflict)",
    413: "The body is larger than the app accepts (body_too_large)",
    414: "The query string is longer than the app accepts (uri_too_long)",
    503: "Index, model or a store unavailable (index_unavailable, model_unavailable, "
         "feedback_unavailable, conversations_unavailable, callbacks_unavailable), or the "
         "search ran past its time limit (search_timeout, with Retry-After)",
}
RATE_LIMITED = {
    "description": "Too many requests from this client (KBSEARCH_RATE_LIMIT per address, "
                   "KBSEARCH_RATE_LIMIT_KEYED per key); wait for Retry-After seconds "
                   "(rate_limited)",
    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    "content": {"application/json": {"schema": ERROR}},
}
HTML = {"description": "HTML page", "content": {"text/html": {}}}
PAGES = ("The pages are for people: a link whose optional parameters are mangled still shows "
         "the page (a ui, p or partial value other than those listed is ignored, and so are "
         "query parameters and form fields the page does not know).")


@dataclass(frozen=True)
class Operation:
    """One route and method of the JSON API, described by its models.

    ``query`` and ``body`` name a model of the app's Contract; ``special`` gives the
    statuses whose body is another model than the one error shape.
    """

    path: str
    method: str
    summary: str
    answer: type[BaseModel]
    errors: tuple[int, ...]
    description: str = ""
    query: str | None = None
    body: str | None = None
    status: int = 200
    body_required: bool = True
    special: tuple[tuple[int, str, type[BaseModel]], ...] = ()


OPERATIONS = (
    Operation("/api/v1/search", "get", "Search published articles, ranked by probability",
              responses.SearchResults, (400, 401, 414, 503), query="search",
              description="Without an API key only public articles; with an agent or "
                          "editor key internal articles too."),
    Operation("/api/v1/feedback", "post", "Record feedback on one result of a search",
              responses.StoredFeedback, (400, 401, 404, 409, 413, 503), body="feedback",
              status=201,
              description="The search must have been answered by this service (its "
                          "search_id) and the article must have been among its results. "
                          "Only the caller that searched may give feedback: with the same "
                          "API key, or without a key with the search's feedback_token; any "
                          "other caller gets 404 unknown_search. The channel follows from "
                          "the key. Each event is stored once per search and article; a "
                          "repeat gets 409."),
    Operation("/api/v1/bot/turn", "post",
              "One chatbot turn: the best article and whether to hand off",
              responses.BotAnswer, (400, 401, 403, 404, 409, 413, 503), body="bot_turn",
              description="For keys with role bot, agent or editor. The conversation is "
                          "kept server-side per key and conversation_id and forgotten "
                          "after the configured idle time. feedback is the customer's "
                          "verdict on the last answer (by default on its best article); "
                          "negative feedback without a message offers the next best "
                          "article. handoff.recommended says to pass the customer to a "
                          "human, with reasons and a summary for the agent."),
    Operation("/api/v1/assist", "post",
              "Agent assist: articles for an e-mail, ticket or transcript",
              responses.AssistAnswer, (400, 401, 403, 413, 503), body="assist",
              description="For keys with role agent or editor; internal articles "
                          "included. Greetings, signatures, quoted history and the "
                          "agent's own lines are set aside; the request is searched and "
                          "each article comes with the sentences of the text that matched "
                          "it (character offsets into the text sent)."),
    Operation("/api/v1/callbacks", "get",
              "Callback requests from the FAQ page, newest first (agent, editor)",
              responses.CallbackList, (400, 401, 403, 414, 503), query="callbacks"),
    Operation("/api/v1/callbacks/{reference}", "post",
              "Mark a callback request done or open again (agent, editor)",
              responses.Callback, (400, 401, 403, 404, 413, 503), body="callback_update"),
    Operation("/api/v1/articles/{id}", "get",
              "One article: metadata, Markdown and sanitised HTML",
              responses.ArticleAnswer, (401, 404, 503)),
    Operation("/api/v1/admin/reindex", "post",
              "Start reindexing the articles in the background (editor)",
              responses.ReindexJob, (400, 401, 403, 413), body="reindex", status=202,
              body_required=False,
              special=((409, "A reindex is already queued or running (reindex_running); "
                             "the running job comes with the error",
                        responses.ReindexConflict),),
              description="For editor keys, or the dashboard's login (session cookie and its "
                          "CSRF token in X-CSRF-Token; without it 400 csrf_missing, with "
                          "another 403 csrf_invalid). The articles folder is built into a "
                          "new index build in the background; searches go on being answered "
                          "from the current build and switch to the new one when it is "
                          "complete. One reindex at a time, over every server process."),
    Operation("/api/v1/admin/reindex", "get",
              "The latest reindex: state, progress, result or error (editor)",
              responses.ReindexJob, (401, 403, 404),
              description="404 not_found before the first reindex. A job whose server "
                          "process stopped is reported as failed."),
    Operation("/healthz", "get", "Liveness and the loaded index", responses.Health, (503,)),
)
PATH_PARAMETERS = {
    "id": {"type": "string"},
    "reference": {"type": "string", "pattern": f"^{REFERENCE.pattern}$"},
    "category": {"type": "string"},
}


def openapi_document(contract: Contract, settings: Settings, version: str) -> dict[str, Any]:
    """Return the OpenAPI 3.1 description of every route under an app's contract and settings."""
    schemas = component_schemas(contract)
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = api_operation(
            operation, contract)
    paths["/api/v1/openapi.json"] = {"get": {
        "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.1 document", "content": {
            "application/json": {"schema": {"type": "object"}}}}}}}
    paths.update(faq_paths(settings))
    paths.update(admin_paths())
    for path, methods in paths.items():
        if path == "/healthz":
            continue  # never rate limited
        for operation in methods.values():
            operation["responses"].setdefault("429", RATE_LIMITED if path.startswith("/api/")
                                              else {"description": "Rate limited (HTML page)"})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kbsearch",
            "version": version,
            "description": "Hybrid knowledge-base search for customer service. Every error "
                           "has the shape {\"error\": {\"code\", \"message\"}}; the message "
                           "starts with the parameter it is about. Bodies are JSON objects "
                           f"nested at most {MAX_JSON_DEPTH} levels deep; a whole number "
                           "written with a fraction (2.0) is that integer. " + PAGES,
        },
        "paths": paths,
        "security": [{}, {"bearer": []}, {"apiKey": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "An API key (kbs_...); roles bot, agent, editor"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": schemas,
        },
    }


def component_schemas(contract: Contract) -> dict[str, Any]:
    """Return the JSON schemas of every request body and answer, by model name."""
    models: set[type[BaseModel]] = {
        contract.feedback, contract.bot_turn, contract.assist, contract.callback_update,
        contract.reindex, responses.Error, *(operation.answer for operation in OPERATIONS),
        *(model for operation in OPERATIONS for _, _, model in operation.special)}
    _, top = models_json_schema(
        [(model, "validation") for model in sorted(models, key=lambda m: m.__name__)],
        ref_template=SCHEMAS + "{model}",
    )
    return dict(sorted(top.get("$defs", {}).items()))


def api_operation(operation: Operation, contract: Contract) -> dict[str, Any]:
    """Return the OpenAPI operation object of a JSON API route."""
    success = {"description": operation.answer.__doc__ or "", "content": {
        "application/json": {"schema": {"$ref": SCHEMAS + operation.answer.__name__}}}}
    described: dict[str, Any] = {"summary": operation.summary}
    if operation.description:
        described["description"] = operation.description
    parameters = [{"name": name, "in": "path", "required": True, "schema": schema}
                  for name, schema in PATH_PARAMETERS.items()
                  if "{" + name + "}" in operation.path]
    if operation.query:
        parameters += query_parameters(getattr(contract, operation.query))
    if parameters:
        described["parameters"] = parameters
    if operation.body:
        model = getattr(contract, operation.body)
        described["requestBody"] = {"required": operation.body_required, "content": {
            "application/json": {"schema": {"$ref": SCHEMAS + model.__name__}}}}
    described["responses"] = {str(operation.status): success, **{
        str(status): {"description": ERRORS[status],
                      "content": {"application/json": {"schema": ERROR}}}
        for status in operation.errors}, **{
        str(status): {"description": description,
                      "content": {"application/json": {"schema": {
                          "$ref": SCHEMAS + model.__name__}}}}
        for status, description, model in operation.special}}
    return described


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """Return the OpenAPI parameters of a query-string model, one per field."""
    schema = model.model_json_schema()
    parameters = []
    for name, field in schema["properties"].items():
        field = {key: value for key, value in field.items() if key != "title"}
        description = field.pop("description", "")
        options = [o for o in field.pop("anyOf", [field]) if o.get("type") != "null"]
        default = {"default": field["default"]} if field.get("default") is not None else {}
        value = dict(options[0])
        if "const" in value:  # a choice of one is still a list of choices
            value["enum"] = [value.pop("const")]
        required = name in schema.get("required", ())
        parameters.append({
            "name": name, "in": "query", "required": required,
            "description": description, "schema": {**value, **default},
            # QueryString: an optional parameter sent empty (k=) counts as not sent
            **({} if required else {"allowEmptyValue": True}),
        })
    return parameters


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def faq_paths(settings: Settings) -> dict[str, Any]:
    """Return the FAQ pages' routes (HTML), their parameters from the constants they use.

    The pages ignore optional values they cannot use (see PAGES), so those are any string
    here, the values they use given as ``examples`` (which allow, not restrict).
    """
    ui = _query("ui", {"type": "string", "examples": list(UI_LANGUAGES)},
                "Interface language of the FAQ pages (remembered in a cookie)")
    question = _query("q", search_text(settings), "The question (without it, the page alone)")
    typed = {**_query("q", search_text(settings), "The question"), "required": True}
    article = {"name": "id", "in": "path", "required": True, "schema": PATH_PARAMETERS["id"]}
    context = [_query("s", {"type": "string"}, "search_id of the search the article was "
                                               "opened from"),
               _query("p", {"type": "string"}, position(settings)),
               _query("t", {"type": "string"}, "feedback token of that search (a click "
                                               "is recorded only with it)")]
    return {
        "/": {"get": {"summary": "Self-service FAQ page (HTML): search box, results, topics",
                      "parameters": [question, ui],
                      "responses": {"200": HTML, "400": {"description": "Bad query"}}}},
        "/articles/{id}": {"get": {
            "summary": "Article page (HTML); opened from a search, records a click",
            "parameters": [article, *context, ui],
            "responses": {"200": HTML, "404": {"description": "Not found"}}}},
        "/articles/{id}/vote": {
            "get": {"summary": "Redirect to the article page", "parameters": [article],
                    "responses": {"302": {"description": "To /articles/{id}"}}},
            "post": faq_vote(article, settings),
        },
        "/suche/fragment": {"get": {
            "summary": "FAQ search results alone, for search as you type (HTML)",
            "parameters": [typed, ui],
            "responses": {"200": HTML, "400": {"description": "Bad query"},
                          "503": {"description": "Search unavailable"}}}},
        "/themen/{category}": {"get": {
            "summary": "The public articles of one topic (HTML)",
            "parameters": [{"name": "category", "in": "path", "required": True,
                            "schema": PATH_PARAMETERS["category"]}, ui],
            "responses": {"200": HTML, "404": {"description": "No such topic"}}}},
        "/rueckruf": {
            "get": {"summary": "Callback form (HTML), started from a search or article",
                    "parameters": [_query("q", {"type": "string"}, "The search"),
                                   _query("article", {"type": "string"}, "Article id"), ui],
                    "responses": {"200": HTML}},
            "post": faq_callback(),
        },
        "/rueckruf/danke": {"get": {
            "summary": "Confirmation of a callback request (HTML)",
            "parameters": [_query("nr", {"type": "string"}, "Reference RR-XXXXXX"),
                           _query("zeit", {"type": "string"}, "Time slot"), ui],
            "responses": {"200": HTML,
                          "302": {"description": "No valid reference: to the form"}}}},
    }


def search_text(settings: Settings) -> dict[str, Any]:
    """Return the schema of a search typed into the FAQ page: some text, not too long."""
    return {"type": "string", "pattern": text_pattern(), "maxLength": settings.max_query_chars,
            "description": "Runs of white space count as one character."}


def position(settings: Settings) -> str:
    """Describe the position parameter of an article link or vote."""
    return (f"Position the article was shown at, 1 to {settings.max_k}; another value "
            "records the click or vote without a position")


def _form(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": required, "properties": properties}}}}


def faq_vote(article: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Return the operation of the FAQ page's "did this article help?" form."""
    return {
        "summary": "\"Did this article help?\" from the FAQ page (form post)",
        "parameters": [article],
        "requestBody": _form(["vote"], {
            "vote": {"type": "string", "enum": list(VOTE_EVENTS)},
            "s": {"type": "string", "description": "search_id"},
            "p": {"type": "string", "description": position(settings)},
            "t": {"type": "string", "description": "feedback token of that search"},
            "partial": {"type": "string", "examples": ["1"],
                        "description": "1: return the outcome alone"},
        }),
        "responses": {"200": HTML, "400": {"description": "No valid vote"},
                      "404": {"description": "Not found"},
                      "413": {"description": f"Form larger than {FORM_MAX_BYTES} bytes"},
                      "503": {"description": "Vote not stored"}},
    }


def faq_callback() -> dict[str, Any]:
    """Return the operation of the FAQ page's callback form."""
    return {
        "summary": "Store a callback request (form post)",
        "requestBody": _form(["name", "phone", "preferred_time", "description"], {
            "name": {"type": "string", "pattern": text_pattern(), "maxLength": NAME_MAX},
            "phone": {"type": "string", "allOf": [  # the rule of valid_phone
                {"pattern": "^[ \\t\\r\\n]*\\+?[0-9 \\t\\r\\n()/.\\-]*$"},
                {"pattern": f"^[^0-9]*([0-9][^0-9]*){{{PHONE_DIGITS[0]},{PHONE_DIGITS[1]}}}$"}],
                      "description": f"{PHONE_DIGITS[0]} to {PHONE_DIGITS[1]} digits; spaces "
                                     "and ( ) / . - between them, + before them"},
            "preferred_time": {"type": "string", "enum": list(TIME_SLOTS)},
            "description": {"type": "string", "pattern": text_pattern(),
                            "maxLength": DESCRIPTION_MAX},
            "context": {"type": "string"},
        }),
        "responses": {"303": {"description": "To /rueckruf/danke"},
                      "400": {"description": "Form with a message per bad field"},
                      "413": {"description": f"Form larger than {FORM_MAX_BYTES} bytes"},
                      "503": {"description": "Request not stored"}},
    }


def admin_paths() -> dict[str, Any]:
    """Return the dashboard's routes (HTML forms for editor keys, see kbsearch.http.admin)."""
    to_login = {"description": "Without a live login: to /admin/login"}
    refused = {"description": "The form came without the login's CSRF token (400) or with "
                              "another (403)"}
    too_large = {"description": f"Form larger than {ADMIN_FORM_MAX_BYTES} bytes"}

    def form_post(summary: str, fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
        properties = {"csrf_token": {"type": "string", "description": "The login's token"},
                      **fields}
        return {"summary": summary, "requestBody": _form(["csrf_token", *required], properties),
                "responses": {"303": {"description": "Back to the dashboard, with a notice"},
                              "400": refused, "403": refused, "413": too_large}}

    callback = form_post("Mark a callback request done or open again (form post)",
                         {"status": {"type": "string", "enum": list(CALLBACK_STATUSES)},
                          "shown": {"type": "string", "enum": list(CALLBACK_LISTS)}},
                         ["status"])
    callback["parameters"] = [{"name": "reference", "in": "path", "required": True,
                               "schema": PATH_PARAMETERS["reference"]}]
    return {
        "/admin": {"get": {
            "summary": "Operators' dashboard (HTML, editor login)",
            "parameters": [_query("callbacks", {"type": "string", "examples": list(CALLBACK_LISTS)},
                                  "Which callback requests to list (default, and for another "
                                  "value: open)"),
                           _query("notice", {"type": "string"}, "A notice to show")],
            "responses": {"200": HTML, "303": to_login}}},
        "/admin/login": {
            "get": {"summary": "Dashboard login form (HTML)",
                    "responses": {"200": HTML, "302": {"description": "Logged in already"}}},
            "post": {"summary": "Log in with an editor API key (form post)",
                     "parameters": [{
                         "name": LOGIN_COOKIE, "in": "cookie", "required": True,
                         "schema": {"type": "string", "minLength": 1},
                         "description": "Set by the login form; csrf_token must equal it"}],
                     "requestBody": _form(["key", "csrf_token"], {
                         "key": {"type": "string", "pattern": text_pattern()},
                         "csrf_token": {"type": "string", "minLength": 1,
                                        "description": "The token of the form's cookie"}}),
                     "responses": {
                         "303": {"description": "To /admin, with a session cookie"},
                         "400": {"description": "No key, or no form token"},
                         "401": {"description": "An unknown or revoked key (the form again)"},
                         "403": {"description": "A key of another role than editor, or "
                                                "another form token"},
                         "413": too_large}}},
        "/admin/logout": {"post": form_post("Log out (form post)", {}, [])},
        "/admin/callbacks/{reference}": {"post": callback},
        "/admin/weights/promote": {"post": form_post(
            "Make a weights version current (form post)", {"version": {"type": "string"}},
            ["version"])},
        "/admin/weights/rollback": {"post": form_post(
            "Make the version promoted before the current one current again (form post)",
            {}, [])},
        "/admin/reindex": {"post": form_post(
            "Start reindexing the articles in the background (form post)",
            {"strict": {"type": "string", "enum": ["1"],
                        "description": "Build nothing if any article is invalid"}}, [])},
    }


@docs.get("/openapi.json")
def openapi() -> Any:
    """Return the OpenAPI 3.1 document of every route."""
    parts = components()
    return jsonify(openapi_document(parts.contract, parts.settings, __version__))
