"""Hand-made hostile requests against a real gunicorn server, sent over raw sockets.

Deep nesting, 1 MB and 20 MB bodies, invalid UTF-8 in query strings, JSON bodies and the
request line, NUL bytes, superscript and Arabic-Indic digits, infinities and other
non-integers, wrong content types and over-long query strings. Every answer the app gives on
an ``/api`` route is JSON in the one error shape with its 4xx status; never a 5xx. Two kinds
of request never reach the app, and gunicorn answers them itself (README, "Errors"): a
request line with raw bytes outside printable ASCII (400) and one over 8190 bytes (414);
nor do more than 100 header fields or one over 8190 bytes (431).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from kbsearch.http.contract import MAX_QUERY_STRING_BYTES

from .servers import fake_server, server_settings

FEEDBACK, BOT, ASSIST = "/api/v1/feedback", "/api/v1/bot/turn", "/api/v1/assist"
CALLBACK, REINDEX = "/api/v1/callbacks/RR-AAAAAA", "/api/v1/admin/reindex"
JSON_ROUTES = (FEEDBACK, BOT, ASSIST, CALLBACK, REINDEX)
MB = 1_000_000
GUNICORN = "gunicorn"  # the expected code of an answer gunicorn gives itself (not JSON)
PAGE = "page"  # the expected code of an HTML page of the app


@dataclass(frozen=True)
class Hostile:
    """One hostile request and the answer it must get.

    ``target`` is the request target as sent (bytes: it may hold anything); ``code`` the
    error code of the JSON answer, or GUNICORN or PAGE for an answer that is not JSON.
    """

    name: str
    method: str
    target: bytes
    status: int
    code: str
    body: bytes = b""
    content_type: str | None = "application/json"
    announced: int | None = None  # a Content-Length larger than the body sent
    headers: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Answer:
    """A raw HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


def nested(depth: int) -> bytes:
    """Return a JSON object nested ``depth`` levels deep."""
    return b'{"k": ' * depth + b"1" + b"}" * depth


def padded(size: int) -> bytes:
    """Return a JSON object of about ``size`` bytes, its one field unknown to every route."""
    return b'{"padding": "' + b"a" * size + b'"}'


def assist(k: bytes) -> bytes:
    """Return an assist body with ``k`` as written."""
    return b'{"text": "Router blinkt rot", "k": ' + k + b"}"


CASES = [
    *(Hostile(f"5,000 levels deep {route}", "POST", route.encode(), 400, "invalid_body",
              nested(5000)) for route in JSON_ROUTES),
    *(Hostile(f"1 MB body {route}", "POST", route.encode(), 400, "unknown_parameter",
              padded(MB)) for route in JSON_ROUTES),
    *(Hostile(f"20 MB body {route}", "POST", route.encode(), 413, "body_too_large",
              b'{"padding": "', announced=20 * MB) for route in JSON_ROUTES),
    *(Hostile(f"invalid UTF-8 in the JSON body {route}", "POST", route.encode(), 400,
              "invalid_body", b'{"text": "\xff\xfe caf\xe9"}') for route in JSON_ROUTES),
    Hostile("invalid UTF-8 in the query string", "GET", b"/api/v1/search?q=caf%E9", 400,
            "invalid_parameter"),
    Hostile("overlong UTF-8 in the query string", "GET", b"/api/v1/callbacks?status=%C0%80",
            400, "invalid_parameter"),
    Hostile("raw invalid UTF-8 in the request line", "GET", b"/api/v1/search?q=caf\xe9", 400,
            GUNICORN),
    Hostile("raw UTF-8 in the request line", "GET", b"/api/v1/search?q=caf\xc3\xa9", 400,
            GUNICORN),
    Hostile("raw NUL in the request line", "GET", b"/api/v1/search?q=a\x00b", 400, GUNICORN),
    Hostile("NUL as the whole query", "GET", b"/api/v1/search?q=%00", 400, "invalid_parameter"),
    Hostile("NUL in a parameter name", "GET", b"/api/v1/search?q=a&%00=1", 400,
            "unknown_parameter"),
    Hostile("raw NUL in a JSON string", "POST", ASSIST.encode(), 400, "invalid_body",
            b'{"text": "a\x00b"}'),
    Hostile("superscript two as limit", "GET", b"/api/v1/callbacks?limit=%C2%B2", 400,
            "invalid_parameter"),
    Hostile("Arabic-Indic three as k", "GET", b"/api/v1/search?q=router&k=%D9%A3", 400,
            "invalid_parameter"),
    Hostile("Arabic-Indic three as a JSON k", "POST", ASSIST.encode(), 400, "invalid_parameter",
            assist('"٣"'.encode())),
    *(Hostile(f"k {number.decode()}", "POST", ASSIST.encode(), 400, code, assist(number))
      for number, code in ((b"1e999", "invalid_parameter"), (b"-1e999", "invalid_parameter"),
                           (b"Infinity", "invalid_body"), (b"NaN", "invalid_body"),
                           (b"true", "invalid_parameter"), (b"2.5", "invalid_parameter"),
                           (b"1e18", "invalid_parameter"))),
    Hostile("a form body to a JSON route", "POST", ASSIST.encode(), 400, "invalid_body",
            b"text=Router&k=3", "application/x-www-form-urlencoded"),
    Hostile("no content type", "POST", ASSIST.encode(), 400, "invalid_body",
            b'{"text": "Router"}', None),
    Hostile("text/xml", "POST", ASSIST.encode(), 400, "invalid_body",
            b"<assist><text>Router</text></assist>", "text/xml"),
    Hostile("a query string over the app's limit", "GET",
            b"/api/v1/search?q=" + b"a" * MAX_QUERY_STRING_BYTES, 414, "uri_too_long"),
    Hostile("a query string over the app's limit on a page", "GET",
            b"/?q=" + b"a" * MAX_QUERY_STRING_BYTES, 414, PAGE),
    Hostile("a 1 MB query string", "GET", b"/api/v1/search?q=" + b"a" * MB, 414, GUNICORN),
    Hostile("100 more header fields", "GET", b"/api/v1/search?q=a", 431, GUNICORN,
            headers=tuple(f"X-Pad-{n}: 1".encode() for n in range(100))),
    Hostile("a header field of 10,000 bytes", "GET", b"/api/v1/search?q=a", 431, GUNICORN,
            headers=(b"X-Pad: " + b"a" * 10_000,)),
]


def exchange(port: int, case: Hostile, key: str) -> Answer:
    """Send the case's request as raw bytes over a fresh connection; return the answer."""
    head = [case.method.encode() + b" " + case.target + b" HTTP/1.1", b"Host: 127.0.0.1",
            b"Connection: close", f"Authorization: Bearer {key}".encode(), *case.headers]
    if case.content_type:
        head.append(f"Content-Type: {case.content_type}".encode())
    if case.body or case.announced:
        head.append(f"Content-Length: {case.announced or len(case.body)}".encode())
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        connection.sendall(b"\r\n".join(head) + b"\r\n\r\n" + case.body)
        received = b""
        while chunk := connection.recv(1 << 16):
            received += chunk
    top, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines)}
    return Answer(int(status_line.split()[1]), headers, body)


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake_embedder) -> tuple[int, str]:
    """A gunicorn server over the sample index; yield its port and an editor key."""
    from kbsearch.index.builds import build_index
    from kbsearch.stores.keys import KeyStore

    from .conftest import ARTICLES

    folder = tmp_path_factory.mktemp("hostile")
    data: Path = folder / "data"
    data.mkdir()
    build_index(ARTICLES, folder / "index", fake_embedder)
    _, key = KeyStore(data / "keys.json").create("editor", "hostile")
    with fake_server(folder, server_settings(data, folder / "index", ARTICLES)) as server:
        yield server.port, key


def outcome(answer: Answer) -> tuple[int, str]:
    """Return an answer's status and error code; GUNICORN or PAGE for one that is not JSON.

    A JSON answer must have the one error shape. The app puts its security headers on
    every answer, gunicorn on none of its own.
    """
    if answer.headers.get("content-type") == "application/json":
        error = json.loads(answer.body)
        assert set(error) == {"error"} and set(error["error"]) == {"code", "message"}, error
        return answer.status, error["error"]["code"]
    return answer.status, PAGE if "x-content-type-options" in answer.headers else GUNICORN


@pytest.mark.slow
def test_every_hostile_request_gets_its_refusal(server, capsys):
    port, key = server
    wrong = []
    for case in CASES:
        found = outcome(exchange(port, case, key))
        if found != (case.status, case.code):
            wrong.append(f"{case.name}: got {found}, expected {(case.status, case.code)}")
    with capsys.disabled():
        print(f"\nhostile requests: {len(CASES)} cases, {len(wrong)} answered otherwise")
    assert not wrong, "\n".join(wrong)
