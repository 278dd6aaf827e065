"""The input contract of the JSON API: one pydantic model per request body and query string.

:meth:`Contract.from_settings` builds the models of one app: their limits come from its
settings (query length, k, assist text length), their enums from the code's own tuples
(feedback events and channels, bot feedback events, callback statuses). The same models
validate every request and generate the OpenAPI document (:mod:`kbsearch.http.openapi`).

Every way a request can break the contract is one :class:`ContractError` with one code:

    invalid_body       the body is not JSON, not an object, or nested too deep
    unknown_parameter  a query parameter or JSON field the route does not know
    invalid_parameter  a known parameter with a bad value (missing, wrong type, out of range)

A body over the app's size limit is refused earlier, with 413 ``body_too_large``, and a query
string over MAX_QUERY_STRING_BYTES with 414 ``uri_too_long`` (:func:`check_query_string`).
"""

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import unquote_to_bytes

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestURITooLarge
from werkzeug.wrappers import Request

from kbsearch.channels.bot import CONVERSATION_ID, BotEvent
from kbsearch.config import Settings
from kbsearch.errors import KbsearchError
from kbsearch.stores.callbacks import STATUSES as CALLBACK_STATUSES
from kbsearch.stores.callbacks import CallbackStatus, text_pattern
from kbsearch.stores.feedback import Channel, Event

INVALID_BODY = "invalid_body"
UNKNOWN_PARAMETER = "unknown_parameter"
INVALID_PARAMETER = "invalid_parameter"
BODY_TOO_LARGE = "body_too_large"
MAX_JSON_DEPTH = 32
# The query string's limit, in bytes as sent: room for a search of the longest query in any
# script (9 bytes a character percent-encoded) with its other parameters, and below the
# request-line limit of gunicorn (kbsearch.http.gunicorn_conf), so that the app answers it.
MAX_QUERY_STRING_BYTES = 6144
URI_TOO_LONG = "uri_too_long"
CALLBACK_LIMIT = 1000
CALLBACK_DEFAULT_LIMIT = 100
CALLBACK_LISTS = (*CALLBACK_STATUSES, "all")
RULE = "contract"  # the pydantic error type of the rules written here, worded for people
ASCII_INTEGER = re.compile(r"-?[0-9]{1,18}(?:\.0+)?")  # 7, and 7.0 as JSON Schema reads it
SHOWN_CHARS = 60

M = TypeVar("M", bound=BaseModel)


class ContractError(KbsearchError):
    """A request breaks the API's input contract; ``code`` says how, the message names what."""

    def __init__(self, code: str, parameter: str, message: str) -> None:
        self.code = code
        self.parameter = parameter
        text = f"{parameter}: {message}"  # a lone surrogate sent in JSON is shown escaped
        super().__init__(text.encode("utf-8", "backslashreplace").decode("utf-8"))


class QueryString(BaseModel):
    """A query string: only its own parameters, each at most once, integers in ASCII digits
    (a zero fraction, ``7.0``, allowed: JSON Schema's integer 7).

    An optional parameter sent empty (``k=``, as HTML forms do) counts as not sent.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_missing(cls, data: Any) -> Any:
        """Leave out the optional parameters sent empty."""
        if not isinstance(data, dict):
            return data
        return {name: value for name, value in data.items()
                if value != "" or name not in cls.model_fields
                or cls.model_fields[name].is_required()}


class JsonBody(BaseModel):
    """A JSON request body: only its own fields, in strict JSON types (no true for 1, no 2.5).

    A whole number written with a fraction (``2.0``) is read as the integer, as JSON Schema
    reads it (see :func:`json_object`).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _ascii_integer(value: object) -> object:
    """Turn a query string's ASCII digits into an int; leave anything else to be refused."""
    if isinstance(value, str) and ASCII_INTEGER.fullmatch(value):
        return int(value.split(".")[0])
    return value


QueryInt = Annotated[int, BeforeValidator(_ascii_integer)]


def collapsed_text(max_chars: int, required: bool) -> Any:
    """Return a string type of at most ``max_chars`` once runs of white space are collapsed.

    With ``required`` the text must have a character that is neither white space nor a
    control or formatting character (the document's ``pattern``, :func:`text_pattern`).
    """

    def check(value: str) -> str:
        length = len(" ".join(value.split()))
        if required and not re.search(text_pattern(), value):
            raise PydanticCustomError(RULE, "is empty; type a question or some words")
        if length > max_chars:
            raise PydanticCustomError(
                RULE, "has {length} characters; at most {limit} are allowed",
                {"length": length, "limit": max_chars})
        return value

    limits: dict[str, Any] = {"maxLength": max_chars}
    if required:
        limits.update(minLength=1, pattern=text_pattern())
    return Annotated[str, AfterValidator(check), Field(json_schema_extra=limits)]


class BotFeedback(JsonBody):
    """The customer's verdict on an article of the bot's last answer (default: its best)."""

    event: BotEvent
    article_id: str | None = Field(None, min_length=1)


class SearchFields(QueryString):
    """The fields of ``GET /api/v1/search``'s query string, as views read them."""

    q: str
    k: int
    lang: str | None = None
    tags: str | None = None
    category: str | None = None


class BotTurnFields(JsonBody):
    """The fields of ``POST /api/v1/bot/turn``'s body, as views read them."""

    conversation_id: str
    message: str | None = None
    feedback: BotFeedback | None = None


class AssistFields(JsonBody):
    """The fields of ``POST /api/v1/assist``'s body, as views read them."""

    text: str
    k: int


# The models below narrow those fields with limits from the settings, so their annotations
# are types built at run time, which a static type checker cannot follow (hence the
# "valid-type" ignores); views see them through the *Fields classes above.


def search_query_model(settings: Settings) -> type[SearchFields]:
    """Return the model of ``GET /api/v1/search``'s query string under these settings."""
    query_text = collapsed_text(settings.max_query_chars, required=True)

    class SearchQuery(SearchFields):
        """Search published articles."""

        q: query_text = Field(  # type: ignore[valid-type]
            description="The question or words to search for (runs of white space count as "
                        "one character).")
        k: QueryInt = Field(settings.default_k, ge=1, le=settings.max_k,
                            description="Number of results.")
        lang: Literal[settings.languages] | None = Field(  # type: ignore[name-defined]
            None, description="Only articles in this language.")
        tags: str | None = Field(None, description="Comma-separated tags an article must "
                                                   "all have.")
        category: str | None = Field(None, description="Only this category.")

    return SearchQuery


class FeedbackRequest(JsonBody):
    """Feedback on one result of a logged search."""

    search_id: str = Field(min_length=1, description="The search_id of the search.")
    article_id: str = Field(min_length=1, description="An article among its results.")
    event: Event
    position: int | None = Field(None, ge=1, description="1-based; defaults to where the "
                                                         "article was shown.")
    feedback_token: str | None = Field(
        None, min_length=1, max_length=64,
        description="The feedback_token of the search's answer: required for a search made "
                    "without an API key; a search made with a key takes feedback only from "
                    "that key.")
    channel: Channel | None = Field(
        None, description="Follows from the API key (api without a key, bot, agent for "
                          "agent and editor keys); when given it must be that channel.")


def _event_name_as_object(value: object) -> object:
    """Read a bare event name as ``{"event": name}``."""
    return {"event": value} if isinstance(value, str) else value


def bot_turn_model(settings: Settings) -> type[BotTurnFields]:
    """Return the model of ``POST /api/v1/bot/turn``'s body under these settings."""
    message_text = collapsed_text(settings.max_query_chars, required=False)
    feedback_input = BotEvent | BotFeedback | None

    class BotTurnRequest(BotTurnFields):
        """One chatbot turn."""

        model_config = ConfigDict(json_schema_extra={"anyOf": [  # the rule of ChatBot.turn
            {"required": ["message"],
             "properties": {"message": {"type": "string", "pattern": text_pattern()}}},
            {"required": ["feedback"], "properties": {"feedback": {"not": {"type": "null"}}}},
        ]})

        conversation_id: str = Field(pattern=f"^{CONVERSATION_ID.pattern}$")
        message: message_text | None = Field(  # type: ignore[valid-type]
            None, description="Required unless feedback is given.")
        feedback: Annotated[
            BotFeedback | None,
            BeforeValidator(_event_name_as_object, json_schema_input_type=feedback_input),
        ] = Field(None, description="An event name, or an object with event and article_id.")

    return BotTurnRequest


def assist_model(settings: Settings) -> type[AssistFields]:
    """Return the model of ``POST /api/v1/assist``'s body under these settings."""

    class AssistRequest(AssistFields):
        """An e-mail, ticket or transcript to find articles for."""

        text: str = Field(min_length=1, max_length=settings.assist_max_chars)
        k: int = Field(settings.assist_results, ge=1, le=settings.max_k,
                       description="Number of articles.")

    return AssistRequest


class CallbackListQuery(QueryString):
    """Which callback requests to list."""

    status: Literal[CALLBACK_LISTS] = Field(  # type: ignore[valid-type]  # statuses + "all"
        "open", description="Which requests.")
    limit: QueryInt = Field(CALLBACK_DEFAULT_LIMIT, ge=1, le=CALLBACK_LIMIT,
                            description="At most this many, newest first.")


class CallbackUpdate(JsonBody):
    """The new status of a callback request."""

    status: CallbackStatus


class ReindexRequest(JsonBody):
    """How to reindex (the body may be left out)."""

    strict: bool = Field(False, description="Build nothing if any article is invalid (as "
                                            "kbsearch index --strict).")


@dataclass(frozen=True)
class Contract:
    """The request models of one app, their limits taken from its settings."""

    search: type[SearchFields]
    feedback: type[FeedbackRequest]
    bot_turn: type[BotTurnFields]
    assist: type[AssistFields]
    callbacks: type[CallbackListQuery]
    callback_update: type[CallbackUpdate]
    reindex: type[ReindexRequest]

    @classmethod
    def from_settings(cls, settings: Settings) -> "Contract":
        """Build every request model with the limits of these settings."""
        return cls(
            search=search_query_model(settings),
            feedback=FeedbackRequest,
            bot_turn=bot_turn_model(settings),
            assist=assist_model(settings),
            callbacks=CallbackListQuery,
            callback_update=CallbackUpdate,
            reindex=ReindexRequest,
        )


# Reading requests


def read_query(model: type[M], args: MultiDict[str, str]) -> M:
    """Return a query string as the model; raise ContractError.

    A parameter sent more than once reaches the model as a list, which no field accepts.
    """
    values = {name: found[0] if len(found) == 1 else found
              for name, found in args.lists()}
    return validate(model, values, "parameter")


def check_query_string(raw: bytes) -> None:
    """Refuse a query string (as sent) over MAX_QUERY_STRING_BYTES, or not UTF-8 when decoded.

    Raises werkzeug's RequestURITooLarge (414) or ContractError (invalid_parameter).
    """
    if len(raw) > MAX_QUERY_STRING_BYTES:
        raise RequestURITooLarge(f"query string: {len(raw)} bytes; at most "
                                 f"{MAX_QUERY_STRING_BYTES} are allowed")
    try:
        unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise ContractError(INVALID_PARAMETER, "query string", "is not UTF-8 once "
                                                               "percent-decoded") from None


def read_body(model: type[M], request: Request) -> M:
    """Return the request's JSON body as the model; raise ContractError.

    Reading a body over the request's size limit raises werkzeug's RequestEntityTooLarge.
    """
    if not request.is_json:
        raise ContractError(INVALID_BODY, "body", "send a JSON object with Content-Type: "
                                                  "application/json")
    return validate(model, json_object(request.get_data(cache=True)), "field")


def json_object(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Parse a JSON object; raise ContractError (invalid_body) for anything else.

    The nesting is measured before parsing, without recursion, so that no body can make
    the parser recurse deeper than ``max_depth``.
    """
    try:
        text = raw.decode(json.detect_encoding(raw))
    except (UnicodeDecodeError, LookupError):
        raise ContractError(INVALID_BODY, "body", "is not UTF-8 text") from None
    if nesting_depth(text) > max_depth:
        raise ContractError(INVALID_BODY, "body", f"nests arrays and objects deeper than "
                                                  f"{max_depth} levels")
    try:
        value = json.loads(text, parse_float=_json_number, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ContractError(INVALID_BODY, "body", f"is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ContractError(INVALID_BODY, "body", f"must be a JSON object, not {shown(value)}")
    return value


def _json_number(text: str) -> int | float:
    """Read a JSON number with a fraction or exponent; a whole one (``52.0``, ``1e2``) as int.

    JSON has one number type and JSON Schema's ``integer`` is any number without a fractional
    part, so a whole number written with a fraction is the integer the document allows.
    Too large a number becomes infinity, which no field accepts.
    """
    value = float(text)
    return int(value) if value.is_integer() else value


def _refuse_constant(name: str) -> None:
    """Refuse NaN and Infinity, which Python reads but JSON does not have."""
    raise ValueError(f"{name} is not JSON")


def nesting_depth(text: str) -> int:
    """Return how deeply arrays and objects nest in JSON text, in linear time, without parsing.

    Escaped backslashes and quotes are dropped; then every other stretch between quotes is a
    string, whose brackets do not count. For text that is not JSON the result is at least
    the depth a parser would reach before it failed.
    """
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    outside = "".join(unescaped.split('"')[::2]).encode("ascii", "ignore")
    codes = np.frombuffer(outside, dtype=np.uint8)
    opens = (codes == ord("[")) | (codes == ord("{"))
    closes = (codes == ord("]")) | (codes == ord("}"))
    return int(np.cumsum(opens.astype(np.int64) - closes).max(initial=0))


# Turning pydantic's errors into the one error scheme


def validate(model: type[M], data: dict[str, Any], noun: str) -> M:
    """Return ``data`` as the model; raise ContractError for its first problem.

    ``noun`` ("parameter" or "field") is what the messages call an input.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise contract_error(model, exc, noun) from None


def contract_error(model: type[BaseModel], exc: ValidationError, noun: str) -> ContractError:
    """Return the ContractError of a failed validation: unknown inputs first, else a bad value."""
    errors = exc.errors(include_url=False)
    schema = model.model_json_schema()
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        parent = unknown[0]["loc"][:-1]
        names = [dotted(e["loc"]) for e in unknown if e["loc"][:-1] == parent]
        allowed = ", ".join(sorted(fields_at(schema, parent)))
        plural = "s" if len(names) > 1 else ""
        return ContractError(UNKNOWN_PARAMETER, ", ".join(names),
                             f"unknown {noun}{plural}; allowed: {allowed}")
    first = errors[0]
    name = dotted(first["loc"]) or "body"
    if not first["loc"]:  # the object as a whole, such as a key that is no text
        return ContractError(INVALID_BODY, name, f"must be {describe(schema, schema)}")
    if first["type"] == RULE:
        return ContractError(INVALID_PARAMETER, name, first["msg"])
    rule = describe(schema_at(schema, first["loc"]), schema)
    if first["type"] == "missing":
        return ContractError(INVALID_PARAMETER, name, f"is required: {rule}")
    return ContractError(INVALID_PARAMETER, name, f"must be {rule}, got {shown(first['input'])}")


def dotted(loc: tuple[int | str, ...]) -> str:
    """Return where an input is, as ``feedback.event`` or ``items.0``."""
    return ".".join(str(part) for part in loc)


def shown(value: object) -> str:
    """Return a value as JSON, cut short."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…"


def resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow a ``$ref`` to the model's own ``$defs``."""
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def schema_at(root: dict[str, Any], loc: tuple[int | str, ...]) -> dict[str, Any]:
    """Return the JSON schema of the input at ``loc`` (empty if the schema does not say)."""
    node = root
    for part in loc:
        node = resolve(node, root)
        options = [resolve(n, root) for n in node.get("anyOf", [node])]
        node = next((n["properties"][part] for n in options
                     if part in n.get("properties", {})), {})
    return resolve(node, root)


def fields_at(root: dict[str, Any], loc: tuple[int | str, ...]) -> list[str]:
    """Return the fields the object at ``loc`` may have."""
    node = schema_at(root, loc)
    options = [resolve(n, root) for n in node.get("anyOf", [node])]
    return next((list(n["properties"]) for n in options if "properties" in n), [])


def describe(node: dict[str, Any], root: dict[str, Any]) -> str:
    """Say in words which values a JSON schema allows."""
    node = resolve(node, root)
    if "anyOf" in node:  # null is left out: query strings have none, bodies rarely need it
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        return " or ".join(describe(option, root) for option in options)
    if "enum" in node:
        return "one of " + ", ".join(str(value) for value in node["enum"])
    if "const" in node:
        return str(node["const"])
    kind = node.get("type")
    if kind == "integer":
        low, high = node.get("minimum"), node.get("maximum")
        if low is not None and high is not None:
            return f"a whole number from {low} to {high}"
        return "a whole number" + (f" of at least {low}" if low is not None else "")
    if kind == "string":
        words = "a non-empty string" if node.get("minLength") else "a string"
        if "maxLength" in node:
            words += f" of at most {node['maxLength']} characters"
        if "pattern" in node:
            words += f" matching {node['pattern']}"
        return words
    if kind == "object":
        return "an object with " + ", ".join(node.get("properties", {}))
    return {"null": "null", "boolean": "true or false", "number": "a number"}.get(
        str(kind), "a value")
