"""The API's one input contract: every route, good and bad requests, answers as documented."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from kbsearch.channels.faq import SearchContext, parse_context
from kbsearch.http.contract import MAX_JSON_DEPTH, ContractError, json_object, nesting_depth
from kbsearch.stores.callbacks import CallbackRequest

from .conftest import make_settings
from .test_openapi import query_parameter

DEEP_ARRAY = "[" * 5000 + "]" * 5000
DEEP_OBJECT = '{"a": ' * 5000 + "1" + "}" * 5000
TOO_LARGE = '{"pad": "' + "x" * (1024 * 1024) + '"}'
AGENT, BOT, EDITOR, NOBODY = "agent", "bot", "editor", None
SEARCH = "/api/v1/search"
FEEDBACK = "/api/v1/feedback"
TURN = "/api/v1/bot/turn"
ASSIST = "/api/v1/assist"
CALLBACKS = "/api/v1/callbacks"
CALLBACK = "/api/v1/callbacks/{reference}"
ARTICLE = "/api/v1/articles/{id}"
REINDEX = "/api/v1/admin/reindex"  # started for real in tests/test_admin.py, on an index copy


@pytest.fixture(scope="module")
def served(tmp_path_factory, sample_index, fake_embedder):
    """A search service over the sample index, with an agent and a bot key."""
    from kbsearch.service import SearchService
    from kbsearch.stores.keys import KeyStore

    settings = make_settings(tmp_path_factory.mktemp("contract"), index=sample_index)
    store = KeyStore(settings.keys_file)
    keys = {role: store.create(role, f"contract {role}")[1] for role in (AGENT, BOT, EDITOR)}
    return SearchService(settings, embedder=fake_embedder), keys


@pytest.fixture
def api(served):
    """A client, its keys, the OpenAPI document, and the values a request may refer to."""
    from kbsearch.api import create_app
    from kbsearch.http.context import Components

    service, keys = served
    app = create_app({"TESTING": True}, search_service=service)
    client = app.test_client()
    found = client.get(SEARCH, query_string={"q": "Router blinkt rot", "k": 3}).get_json()
    stored = Components.of(app).callbacks.add(CallbackRequest(
        "Erika Muster", "+49 30 1234567", "morning", "Abschlag zu hoch", "de"))
    refer = {"search_id": found["search_id"], "article_id": found["results"][0]["id"],
             "reference": stored.reference, "token": found["feedback_token"]}
    return client, keys, client.get("/api/v1/openapi.json").get_json(), refer


def fill(value: Any, refer: dict[str, str]) -> Any:
    """Put the values a request refers to (``{search_id}``, ...) into it."""
    if isinstance(value, str):
        for name, known in refer.items():
            value = value.replace("{" + name + "}", known)
        return value
    if isinstance(value, dict):
        return {k: fill(v, refer) for k, v in value.items()}
    return value


def check_documented(document: dict[str, Any], path: str, method: str, response) -> None:
    """Check that an answer's status is documented for the route and its body fits the schema."""
    documented = document["paths"][path][method]["responses"]
    assert str(response.status_code) in documented, (path, method, response.status_code)
    schema = documented[str(response.status_code)]["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator({**schema, "components": document["components"]})
    validator.validate(response.get_json())


GOOD = [
    (SEARCH, "get", NOBODY, {"query_string": {"q": "Zählerstand melden", "k": "3"}}, 200),
    (SEARCH, "get", AGENT, {"query_string": {"q": "Kulanz", "k": "", "lang": "de"}}, 200),
    (FEEDBACK, "post", NOBODY, {"json": {"search_id": "{search_id}", "article_id":
                                         "{article_id}", "event": "click",
                                         "feedback_token": "{token}"}}, 201),
    (FEEDBACK, "post", NOBODY, {"json": {"search_id": "{search_id}", "article_id":
                                         "{article_id}", "event": "helpful", "position": 1,
                                         "channel": "api", "feedback_token": "{token}"}}, 201),
    (TURN, "post", BOT, {"json": {"conversation_id": "c-1", "message": "Router blinkt rot"}},
     200),
    (TURN, "post", BOT, {"json": {"conversation_id": "c-2", "message": "Ich will einen "
                                  "Menschen sprechen", "feedback": None}}, 200),
    (ASSIST, "post", AGENT, {"json": {"text": "Hallo,\nmein Router blinkt rot. Was kann ich "
                                      "tun?\nGruß Erika", "k": 2}}, 200),
    (CALLBACKS, "get", AGENT, {"query_string": {"status": "all", "limit": "5"}}, 200),
    # as the document reads them: an empty optional parameter is not sent (allowEmptyValue),
    # a whole number with a zero fraction is JSON Schema's integer
    (CALLBACKS, "get", AGENT, {"query_string": {"status": "", "limit": ""}}, 200),
    (SEARCH, "get", NOBODY, {"query_string": {"q": "Router", "k": "3.0"}}, 200),
    (ASSIST, "post", AGENT, {"json": {"text": "Mein Router blinkt rot", "k": 2.0}}, 200),
    (CALLBACK, "post", AGENT, {"json": {"status": "done"}}, 200),
    (ARTICLE, "get", NOBODY, {}, 200),
    ("/healthz", "get", NOBODY, {}, 200),
]


@pytest.mark.parametrize(("path", "method", "role", "request_", "status"), GOOD)
def test_good_requests_are_answered_as_documented(api, path, method, role, request_, status):
    client, keys, document, refer = api
    url = path.format(reference=refer["reference"], id=refer["article_id"])
    headers = {"X-API-Key": keys[role]} if role else {}
    response = client.open(url, method=method.upper(), headers=headers,
                           **fill(request_, refer))
    assert response.status_code == status, response.get_json()
    check_documented(document, path, method, response)


def raw(text: str) -> dict[str, Any]:
    """Return the arguments of a request whose body is this text, sent as JSON."""
    return {"data": text, "content_type": "application/json"}


def query(**values: Any) -> dict[str, Any]:
    """Return the arguments of a request with this query string."""
    return {"query_string": values}


FEEDBACK_BODY = {"search_id": "{search_id}", "article_id": "{article_id}", "event": "click"}
BAD = [
    # query strings: unknown parameters, bad values, numbers in other digits or types
    (SEARCH, "get", NOBODY, query(q="a", colour="blue"), 400, "unknown_parameter", "colour:"),
    (SEARCH, "get", NOBODY, query(k="3"), 400, "invalid_parameter", "q:"),
    (SEARCH, "get", NOBODY, query(q="   "), 400, "invalid_parameter", "q:"),
    (SEARCH, "get", NOBODY, query(q="\x87\u200b\x00"), 400, "invalid_parameter", "q:"),
    (SEARCH, "get", NOBODY, {"query_string": "q=caf%E9"}, 400, "invalid_parameter",
     "query string:"),
    (SEARCH, "get", NOBODY, query(q="x" * 7000), 414, "uri_too_long", "query string:"),
    (SEARCH, "get", NOBODY, query(q="a", k="7."), 400, "invalid_parameter", "k:"),
    (SEARCH, "get", NOBODY, query(q="x" * 1001), 400, "invalid_parameter", "q:"),
    (SEARCH, "get", NOBODY, query(q="a", k="true"), 400, "invalid_parameter", "k:"),
    (SEARCH, "get", NOBODY, query(q="a", k="5.7"), 400, "invalid_parameter", "k:"),
    (SEARCH, "get", NOBODY, query(q="a", k="²"), 400, "invalid_parameter", "k:"),
    (SEARCH, "get", NOBODY, query(q="a", k="٥"), 400, "invalid_parameter", "k:"),
    (SEARCH, "get", NOBODY, query(q="a", k="0"), 400, "invalid_parameter", "k:"),
    (SEARCH, "get", NOBODY, query(q="a", k="101"), 400, "invalid_parameter", "k:"),
    (SEARCH, "get", NOBODY, query(q="a", k=["1", "2"]), 400, "invalid_parameter", "k:"),
    (SEARCH, "get", NOBODY, query(q="a", lang="fr"), 400, "invalid_parameter", "lang:"),
    (CALLBACKS, "get", AGENT, query(limit="²"), 400, "invalid_parameter", "limit:"),
    (CALLBACKS, "get", AGENT, query(limit="٣"), 400, "invalid_parameter", "limit:"),
    (CALLBACKS, "get", AGENT, query(limit="1001"), 400, "invalid_parameter", "limit:"),
    (CALLBACKS, "get", AGENT, query(status="closed"), 400, "invalid_parameter", "status:"),
    (CALLBACKS, "get", AGENT, query(sort="name"), 400, "unknown_parameter", "sort:"),
    # bodies that are no JSON object, nested too deep, or too large
    (FEEDBACK, "post", NOBODY, raw("not json"), 400, "invalid_body", "body:"),
    (FEEDBACK, "post", NOBODY, raw("[1, 2]"), 400, "invalid_body", "body:"),
    (FEEDBACK, "post", NOBODY, {"data": "event=click"}, 400, "invalid_body", "body:"),
    (FEEDBACK, "post", NOBODY, raw('{"position": NaN}'), 400, "invalid_body", "body:"),
    (FEEDBACK, "post", NOBODY, raw(DEEP_ARRAY), 400, "invalid_body", "body:"),
    (FEEDBACK, "post", NOBODY, raw('{"a": "' + '\\"[' * 200_000), 400, "invalid_body",
     "body:"),
    (FEEDBACK, "post", NOBODY, raw('{"\\udc00": 1}'), 400, "invalid_body", "body:"),
    (FEEDBACK, "post", NOBODY, raw(TOO_LARGE), 413, "body_too_large", "body:"),
    (TURN, "post", BOT, raw(DEEP_OBJECT), 400, "invalid_body", "body:"),
    (TURN, "post", BOT, raw(TOO_LARGE), 413, "body_too_large", "body:"),
    (ASSIST, "post", AGENT, raw('{"text": ' + DEEP_ARRAY + "}"), 400, "invalid_body", "body:"),
    (CALLBACK, "post", AGENT, raw(DEEP_OBJECT), 400, "invalid_body", "body:"),
    (CALLBACK, "post", AGENT, raw(TOO_LARGE), 413, "body_too_large", "body:"),
    # JSON fields: unknown, missing, wrong type, out of range, not one of the code's names
    (FEEDBACK, "post", NOBODY, {"json": {**FEEDBACK_BODY, "user": "x"}}, 400,
     "unknown_parameter", "user:"),
    (FEEDBACK, "post", NOBODY, {"json": {**FEEDBACK_BODY, "event": "love"}}, 400,
     "invalid_parameter", "event:"),
    (FEEDBACK, "post", NOBODY, {"json": {**FEEDBACK_BODY, "position": True}}, 400,
     "invalid_parameter", "position:"),
    (FEEDBACK, "post", NOBODY, {"json": {**FEEDBACK_BODY, "position": 1.5}}, 400,
     "invalid_parameter", "position:"),
    (FEEDBACK, "post", NOBODY, {"json": {**FEEDBACK_BODY, "search_id": "0" * 32}}, 404,
     "unknown_search", "search_id:"),
    (TURN, "post", BOT, {"json": {"conversation_id": "c", "message": "x", "mood": "sad"}},
     400, "unknown_parameter", "mood:"),
    (TURN, "post", BOT, {"json": {"conversation_id": "c", "feedback": {"event": "helpful",
                                                                         "extra": 1}}},
     400, "unknown_parameter", "feedback.extra:"),
    (TURN, "post", BOT, {"json": {"conversation_id": "c", "feedback": "love"}}, 400,
     "invalid_parameter", "feedback.event:"),
    (TURN, "post", BOT, {"json": {"conversation_id": "c", "message": 5}}, 400,
     "invalid_parameter", "message:"),
    (TURN, "post", BOT, {"json": {"conversation_id": "fresh", "feedback": "helpful"}}, 404,
     "unknown_answer", "feedback:"),  # valid as the document says, but no answer to judge
    (TURN, "post", BOT, {"json": {"conversation_id": "0"}}, 400, "invalid_parameter",
     "message:"),
    (TURN, "post", BOT, {"json": {"conversation_id": "0", "message": "\u200b"}}, 400,
     "invalid_parameter", "message:"),
    (TURN, "post", NOBODY, {"json": {"conversation_id": "c", "message": "x"}}, 401,
     "invalid_api_key", ""),
    (ASSIST, "post", AGENT, {"json": {"text": "Router", "k": True}}, 400,
     "invalid_parameter", "k:"),
    (ASSIST, "post", AGENT, {"json": {"text": "Router", "k": 5.7}}, 400,
     "invalid_parameter", "k:"),
    (ASSIST, "post", AGENT, raw('{"text": "Router", "k": 1e999}'), 400,
     "invalid_parameter", "k:"),
    (ASSIST, "post", AGENT, {"json": {"text": "x" * 20_001}}, 400, "invalid_parameter",
     "text:"),
    (ASSIST, "post", AGENT, raw('{"text": "\\ud800"}'), 400, "invalid_parameter", "text:"),
    (ASSIST, "post", AGENT, {"json": {"text": "Router", "urgent": True}}, 400,
     "unknown_parameter", "urgent:"),
    (ASSIST, "post", BOT, {"json": {"text": "Router"}}, 403, "forbidden", ""),
    (CALLBACK, "post", AGENT, {"json": {"status": "called"}}, 400, "invalid_parameter",
     "status:"),
    (CALLBACK, "post", AGENT, {"json": {"status": "done", "note": "x"}}, 400,
     "unknown_parameter", "note:"),
    (CALLBACK, "post", AGENT, {"json": {}}, 400, "invalid_parameter", "status:"),
    (ARTICLE, "get", NOBODY, {}, 404, "not_found", ""),
    # reindexing: editors only, its body checked before anything starts
    (REINDEX, "post", NOBODY, {}, 401, "invalid_api_key", ""),
    (REINDEX, "post", AGENT, {}, 403, "forbidden", ""),
    (REINDEX, "get", BOT, {}, 403, "forbidden", ""),
    (REINDEX, "post", EDITOR, {"json": {"strict": 1}}, 400, "invalid_parameter", "strict:"),
    (REINDEX, "post", EDITOR, {"json": {"force": True}}, 400, "unknown_parameter", "force:"),
    (REINDEX, "post", EDITOR, raw("[]"), 400, "invalid_body", "body:"),
    (REINDEX, "post", EDITOR, raw(TOO_LARGE), 413, "body_too_large", "body:"),
    (REINDEX, "get", EDITOR, {}, 404, "not_found", ""),  # none started on this index
]


@pytest.mark.parametrize(("path", "method", "role", "request_", "status", "code", "starts"),
                         BAD)
def test_bad_requests_get_one_code_scheme_as_documented(api, path, method, role, request_,
                                                        status, code, starts):
    client, keys, document, refer = api
    reference = "RR-AAAAAA" if code == "not_found" else refer["reference"]
    url = path.format(reference=reference, id="gibt-es-nicht")
    headers = {"X-API-Key": keys[role]} if role else {}
    response = client.open(url, method=method.upper(), headers=headers,
                           **fill(request_, refer))
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"].startswith(starts), error
    check_documented(document, path, method, response)


def test_an_unknown_parameter_is_named_with_the_allowed_ones(api):
    client, _, _, _ = api
    message = client.get(SEARCH, query_string={"q": "a", "colour": "blue", "size": "9"}
                         ).get_json()["error"]["message"]
    assert message == "colour, size: unknown parameters; allowed: category, k, lang, q, tags"


@pytest.mark.parametrize(("text", "depth"), [
    ("{}", 1),
    ('{"a": [1, {"b": []}]}', 4),
    ('{"a": "[[[[{{{{"}', 1),
    ('{"a": "\\"[[[["}', 1),
    ('["\\\\", [[]]]', 3),
    ('"\\\\\\"[', 0),  # an escaped backslash, then an escaped quote: still in the string
    ("[" * 40, 40),
    ('"' + '\\"[' * 100_000, 0),  # no closing quote: linear time, not one pass per quote
])
def test_nesting_depth_counts_brackets_outside_strings(text, depth):
    assert nesting_depth(text) == depth


@pytest.mark.parametrize(("raw_body", "accepted"), [
    (b'{"a": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}", False),
    (b'{"a": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}", True),
    ('{"a": "ü"}'.encode("utf-16"), True),
    (b'{"a": "\xff"}', False),
    (b"", False),
    (b'{"k": Infinity}', False),
])
def test_json_object_refuses_bodies_without_recursing(raw_body, accepted):
    if accepted:
        assert json_object(raw_body)["a"] is not None
    else:
        with pytest.raises(ContractError) as refused:
            json_object(raw_body)
        assert refused.value.code == "invalid_body"


@pytest.mark.parametrize("position", ["²", "٣", "-1", "1.0", "true"])
def test_the_faq_pages_ignore_a_position_in_other_digits(position):
    assert parse_context("0" * 32, position, 10) == SearchContext("0" * 32)



def schema_of(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Validator:
    """Return a validator of a schema of the document (its references resolved)."""
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


def form(document: dict[str, Any], path: str) -> jsonschema.Validator:
    """Return a validator of a form post's fields as the document describes them."""
    body = document["paths"][path]["post"]["requestBody"]["content"]
    return schema_of(document, body["application/x-www-form-urlencoded"]["schema"])


@pytest.mark.parametrize(("value", "valid"), [
    ("Router", True), ("\u200dx", True), (" a ", True), ("", False), (" \t\n", False),
    ("\x87", False), ("\u200b\ufeff\x00", False), ("\U000e0001", False),
])
def test_the_document_says_which_searches_have_text(api, value, valid):
    client, _, document, _ = api
    for path in (SEARCH, "/", "/suche/fragment"):
        assert schema_of(document, query_parameter(document, path, "q")["schema"]).is_valid(
            value) is valid, path
    answer = client.get(SEARCH, query_string={"q": value})
    assert (answer.status_code == 200) is valid, answer.get_json()


def test_the_document_says_what_a_bot_turn_needs(api):
    _, _, document, _ = api
    turn = schema_of(document, {"$ref": "#/components/schemas/BotTurnRequest"})
    assert turn.is_valid({"conversation_id": "0", "message": "Router"})
    assert turn.is_valid({"conversation_id": "0", "feedback": "helpful"})
    for refused in ({"conversation_id": "0"}, {"conversation_id": "0", "message": None},
                    {"conversation_id": "0", "message": " ", "feedback": None}):
        assert not turn.is_valid(refused), refused


def test_the_document_lets_optional_query_parameters_be_empty(api):
    _, _, document, _ = api
    for path, name in ((SEARCH, "k"), (SEARCH, "lang"), (CALLBACKS, "status"),
                       (CALLBACKS, "limit")):
        assert query_parameter(document, path, name)["allowEmptyValue"] is True
    assert "allowEmptyValue" not in query_parameter(document, SEARCH, "q")


def test_the_document_describes_the_pages_as_lenient_and_the_forms_as_checked(api):
    client, _, document, _ = api
    for path, name in (("/", "ui"), ("/articles/{id}", "p"), ("/admin", "callbacks")):
        assert query_parameter(document, path, name)["schema"]["type"] == "string"
        assert {"enum", "minimum", "pattern"}.isdisjoint(query_parameter(document, path, name)[
            "schema"]), (path, name)
    assert query_parameter(document, "/suche/fragment", "q")["required"] is True
    assert client.get("/?ui=AAA").status_code == 200
    assert client.get("/suche/fragment").status_code == 400
    login = document["paths"]["/admin/login"]["post"]
    assert [p["in"] for p in login["parameters"]] == ["cookie"]
    assert not form(document, "/admin/login").is_valid({"key": "", "csrf_token": ""})
    callback = form(document, "/rueckruf")
    good = {"name": "Erika", "phone": "+49 (30) 123-4567", "preferred_time": "asap",
            "description": "Abschlag"}
    assert callback.is_valid(good)
    for name, value in (("phone", "Rückruf vereinbaren"), ("phone", "12345"),
                        ("phone", "1" * 16), ("phone", "49+30 1234567"), ("name", " "),
                        ("description", "\x00")):
        assert not callback.is_valid({**good, name: value}), (name, value)
        assert client.post("/rueckruf", data={**good, name: value}).status_code == 400
