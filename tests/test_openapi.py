"""The OpenAPI document is generated from the request models, the settings and the code's names."""

from __future__ import annotations

from typing import Any

import pytest

from kbsearch.channels.bot import FEEDBACK_EVENTS, REASONS
from kbsearch.channels.faq import VOTE_EVENTS
from kbsearch.content.articles import AUDIENCES
from kbsearch.http.web.texts import UI_LANGUAGES
from kbsearch.stores.callbacks import STATUSES, TIME_SLOTS
from kbsearch.stores.feedback import CHANNELS, EVENTS

from .conftest import make_settings


def document_of(tmp_path, **settings: Any) -> tuple[Any, dict[str, Any]]:
    """Return a client of an app with these settings and its OpenAPI document.

    No request here reaches the search model: the document and refused requests need none.
    """
    from kbsearch.api import create_app

    app = create_app({"TESTING": True}, settings=make_settings(tmp_path, **settings))
    client = app.test_client()
    return client, client.get("/api/v1/openapi.json").get_json()


def query_parameter(document: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    """Return a query parameter of a GET route, as the document describes it."""
    found = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == name]
    assert len(found) == 1, (path, name)
    return found[0]


def parameter(document: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    """Return the schema of a query parameter of a GET route."""
    return query_parameter(document, path, name)["schema"]


def field(document: dict[str, Any], schema: str, name: str) -> dict[str, Any]:
    """Return the schema of a field of a component, the null option left out."""
    node = document["components"]["schemas"][schema]["properties"][name]
    options = [o for o in node.get("anyOf", [node]) if o.get("type") != "null"]
    return options[0]


LIMITS = [
    ({"max_k": 7}, lambda d: parameter(d, "/api/v1/search", "k")["maximum"], 7),
    ({"max_k": 7}, lambda d: field(d, "AssistRequest", "k")["maximum"], 7),
    ({"default_k": 4}, lambda d: parameter(d, "/api/v1/search", "k")["default"], 4),
    ({"max_query_chars": 50}, lambda d: parameter(d, "/api/v1/search", "q")["maxLength"], 50),
    ({"max_query_chars": 50}, lambda d: field(d, "BotTurnRequest", "message")["maxLength"],
     50),
    ({"assist_max_chars": 300}, lambda d: field(d, "AssistRequest", "text")["maxLength"], 300),
    ({"assist_results": 3}, lambda d: field(d, "AssistRequest", "k")["default"], 3),
    ({"languages": ("de",)}, lambda d: parameter(d, "/api/v1/search", "lang")["enum"], ["de"]),
]


@pytest.mark.parametrize(("settings", "read", "expected"), LIMITS)
def test_the_documents_limits_are_the_settings(tmp_path, settings, read, expected):
    _, document = document_of(tmp_path, **settings)
    assert read(document) == expected
    _, default = document_of(tmp_path / "default")
    assert read(default) != expected  # the setting, not a number written in the document


@pytest.mark.parametrize(("settings", "path", "request_", "words"), [
    ({"max_k": 7}, "/api/v1/search?q=Router&k=8", {}, "k: must be a whole number from 1 to 7"),
    ({"max_query_chars": 5}, "/api/v1/search?q=Router+blinkt", {}, "q: has 13 characters"),
])
def test_the_app_enforces_the_limits_it_documents(tmp_path, settings, path, request_, words):
    client, _ = document_of(tmp_path, **settings)
    response = client.get(path, **request_)
    assert response.status_code == 400
    assert response.get_json()["error"]["message"].startswith(words)


ENUMS = [
    (lambda d: field(d, "FeedbackRequest", "event")["enum"], EVENTS),
    (lambda d: field(d, "FeedbackRequest", "channel")["enum"], CHANNELS),
    (lambda d: field(d, "StoredFeedback", "event")["enum"], EVENTS),
    (lambda d: field(d, "BotFeedback", "event")["enum"], FEEDBACK_EVENTS),
    (lambda d: field(d, "BotTurnRequest", "feedback")["enum"], FEEDBACK_EVENTS),
    (lambda d: field(d, "HandoffReason", "code")["enum"], tuple(REASONS)),
    (lambda d: field(d, "CallbackUpdate", "status")["enum"], STATUSES),
    (lambda d: field(d, "Callback", "status")["enum"], STATUSES),
    (lambda d: field(d, "Callback", "preferred_time")["enum"], TIME_SLOTS),
    (lambda d: field(d, "ArticleAnswer", "audience")["enum"], AUDIENCES),
    (lambda d: parameter(d, "/api/v1/callbacks", "status")["enum"], (*STATUSES, "all")),
    (lambda d: parameter(d, "/", "ui")["examples"], UI_LANGUAGES),  # any other is ignored
    (lambda d: d["paths"]["/rueckruf"]["post"]["requestBody"]["content"][
        "application/x-www-form-urlencoded"]["schema"]["properties"]["preferred_time"]["enum"],
     TIME_SLOTS),
    (lambda d: d["paths"]["/articles/{id}/vote"]["post"]["requestBody"]["content"][
        "application/x-www-form-urlencoded"]["schema"]["properties"]["vote"]["enum"],
     VOTE_EVENTS),
]


@pytest.mark.parametrize(("read", "expected"), ENUMS)
def test_the_documents_names_are_the_codes(tmp_path, read, expected):
    _, document = document_of(tmp_path)
    assert read(document) == list(expected)


def test_every_request_body_and_answer_schema_forbids_other_fields(tmp_path):
    _, document = document_of(tmp_path)
    for name, schema in document["components"]["schemas"].items():
        assert schema.get("additionalProperties") is False, name


def test_the_document_is_openapi_3_1_with_every_ref_resolvable(tmp_path):
    _, document = document_of(tmp_path)
    assert document["openapi"] == "3.1.0"
    refs: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert refs
    schemas = document["components"]["schemas"]
    for ref in refs:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas
