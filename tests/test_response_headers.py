"""Headers and limits on every response (issue 13, point 7), and the time limit per search.

Every route of the app (enumerated from its URL map, so that a new route is covered without
editing this file), with every method, anonymously and with an editor's key and login,
plus unknown addresses, static files, oversized bodies and unexpected errors: each answer
carries the security headers; every ``/api`` failure is the one JSON error shape; a 405
names the allowed methods in ``Allow``; a body over the limit is a JSON 413 on ``/api`` and
an HTML page elsewhere. Then KBSEARCH_SEARCH_TIME_LIMIT: a search that runs past it is
stopped (the keyword stage midway) and answered 503 ``search_timeout`` with Retry-After.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from kbsearch.api import create_app
from kbsearch.errors import SearchTimeoutError
from kbsearch.http.context import Components
from kbsearch.index.builds import LoadedIndex, open_index
from kbsearch.index.deadline import Deadline
from kbsearch.index.retrieval import DenseRetriever, KeywordRetriever, RetrievalQuery, Retrieved
from kbsearch.service import SearchService
from kbsearch.stores.callbacks import CallbackRequest

from .conftest import make_settings
from .fakes import FakeEmbedder
from .test_admin import log_in

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy")
# A value for each path parameter of the app's routes (a new name needs one here).
PUBLIC_ARTICLE = "zaehlerstand-melden"
LIMIT = 0.3  # seconds: KBSEARCH_SEARCH_TIME_LIMIT of the time-limit tests
SLOW = 0.5  # seconds the slow parts take, more than LIMIT


@pytest.fixture
def parts(app) -> dict[str, Any]:
    """The app's editor key, a callback request's reference and the path values."""
    components = Components.of(app)
    key = components.keys.create("editor", "Redaktion Nord")[1]
    stored = components.callbacks.add(CallbackRequest(
        "Erika Mustermann", "+49 30 1234567", "morning", "Abschlag zu hoch", "de", ""))
    values = {"article_id": PUBLIC_ARTICLE, "category": "zaehler", "reference": stored.reference}
    return {"key": key, "values": values}


def concrete(rule: Any, values: dict[str, str]) -> str:
    """Return a path of a URL rule, its parameters filled in (static: a real file)."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "filename":
            return "admin.css" if rule.endpoint == "admin.static" else "style.css"
        assert name in values, f"no sample value for <{name}> of {rule.rule}: add one in parts"
        return values[name]

    return re.sub(r"<(?:\w+:)?(\w+)>", value, rule.rule)


def problems_of(path: str, method: str, response: Any, allowed: set[str]) -> list[str]:
    """Return what is wrong with one answer: missing headers, a non-JSON API error, no Allow.

    ``allowed`` are the methods the address takes (what a 405 must name in Allow).
    """
    found = [f"no {name}" for name in HEADERS if name not in response.headers]
    csp = response.headers.get("Content-Security-Policy", "")
    if "frame-ancestors 'none'" not in csp:
        found.append("CSP without frame-ancestors 'none'")
    if response.headers.get("X-Content-Type-Options") != "nosniff":
        found.append("X-Content-Type-Options is not nosniff")
    if response.status_code == 405:
        named = {m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()}
        if named != allowed:
            found.append(f"Allow {sorted(named)} instead of {sorted(allowed)}")
    if path.startswith("/api/") and response.status_code >= 400 and method != "HEAD":
        body = response.get_json(silent=True)
        if not (isinstance(body, dict) and set(body) == {"error"}
                and set(body["error"]) == {"code", "message"}
                and all(isinstance(v, str) and v for v in body["error"].values())):
            found.append(f"not the JSON error shape: {response.content_type}")
    return [f"{method} {path} -> {response.status_code}: {p}" for p in found]


def every_request(app: Any, key: str, values: dict[str, str]) -> tuple[int, list[str]]:
    """Send every method to every route anonymously and as an editor; return (sent, problems)."""
    paths: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        paths.setdefault(concrete(rule, values), set()).update(rule.methods)
    anonymous, editor = app.test_client(), app.test_client()
    assert log_in(editor, key).status_code == 303
    bearer = {"Authorization": f"Bearer {key}"}
    sent, problems = 0, []
    for path, allowed in sorted(paths.items()):
        for method, (client, headers) in itertools.product(
                METHODS, ((anonymous, {}), (editor, bearer))):
            response = client.open(path, method=method, headers=headers, json={})
            sent += 1
            problems += problems_of(path, method, response, allowed)
            if response.status_code >= 500:
                problems.append(f"{method} {path} -> {response.status_code}")
            response.close()  # a static file's
    return sent, problems


def test_every_route_and_method_has_the_headers_and_the_error_shape(app, parts):
    sent, problems = every_request(app, parts["key"], parts["values"])
    assert problems == []
    rules = list(app.url_map.iter_rules())
    assert len(rules) >= 30 and sent >= len(rules) * len(METHODS)  # nothing was skipped


@pytest.mark.parametrize("path, status", [
    ("/nirgends", 404), ("/api/v1/nirgends", 404), ("/api/v1", 404),
    ("/static/nirgends.css", 404), ("/admin/static/nirgends.js", 404),
    ("/articles/kein-solcher-artikel", 404), ("/api/v1/articles/kein-solcher-artikel", 404),
    ("/themen/keine", 404), ("/static/style.css", 200), ("/admin/static/admin.js", 200),
    ("/api/v1/openapi.json", 200), ("/healthz", 200), ("/api/v1/search", 400),
])
def test_unknown_addresses_static_files_and_documents_have_the_headers(client, path, status):
    response = client.get(path)
    response.close()  # a static file's
    assert response.status_code == status
    assert problems_of(path, "GET", response, set()) == []
    if path.startswith("/api/") or path == "/healthz":
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    elif status >= 400:
        assert response.content_type.startswith("text/html")


def test_an_unexpected_error_is_json_on_the_api_and_a_page_elsewhere(app, client, monkeypatch):
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Components.of(app).service, "search", boom)
    for path in ("/api/v1/search?q=Router", "/?q=Router", "/suche/fragment?q=Router"):
        response = client.get(path)
        assert response.status_code == 500, path
        assert problems_of(path, "GET", response, set()) == []
        assert "secret" not in response.text


def test_a_body_over_the_limit_is_json_on_the_api_and_a_page_elsewhere(app, parts):
    editor = app.test_client()
    log_in(editor, parts["key"])
    bearer = {"Authorization": f"Bearer {parts['key']}"}
    big = b'{"q": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    answered: dict[str, int] = {}
    for rule in app.url_map.iter_rules():
        if "POST" not in rule.methods:
            continue
        path = concrete(rule, parts["values"])
        api = path.startswith("/api/")
        response = editor.post(path, data=big, headers=bearer, content_type=(
            "application/json" if api else "application/x-www-form-urlencoded"))
        answered[path] = response.status_code
        assert problems_of(path, "POST", response, set()) == []
        if api:
            assert response.status_code == 413, path
            assert response.get_json()["error"]["code"] == "body_too_large"
        elif response.status_code == 413:
            assert response.content_type.startswith("text/html"), path
        else:  # a dashboard action that reads no body: refused by its CSRF check first
            assert response.status_code in (303, 400, 403), (path, response.status_code)
    assert sum(code == 413 for code in answered.values()) >= 8, answered


# A time limit per search


class SlowEmbedder(FakeEmbedder):
    """The fake embedder, slow on purpose from its ``fast``-th query batch on."""

    def __init__(self, fast: int = 0) -> None:
        super().__init__()
        self.fast = fast
        self.calls = 0

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed as the fake does, after sleeping SLOW seconds (but for the first calls)."""
        self.calls += 1
        if self.calls > self.fast:
            time.sleep(SLOW)
        return super().embed_queries(texts)


class SlowKeywordRetriever(KeywordRetriever):
    """Keyword retrieval that takes SLOW seconds more than it needs."""

    def retrieve(self, index: LoadedIndex, query: RetrievalQuery, n: int) -> Retrieved:
        """Sleep, then retrieve as the keyword retriever does."""
        time.sleep(SLOW)
        return super().retrieve(index, query, n)


def limited_app(tmp_path: Any, sample_index: Any, embedder: FakeEmbedder,
                retrievers: tuple[Any, ...] | None = None, **settings: Any) -> Any:
    """An app over the sample index whose searches may take LIMIT seconds."""
    values = make_settings(tmp_path, index=sample_index, search_time_limit=LIMIT, **settings)
    extra = {"retrievers": retrievers} if retrievers else {}
    service = SearchService(values, embedder=embedder, **extra)
    return create_app({"TESTING": True}, search_service=service)


def test_the_keyword_stage_is_stopped_between_two_documents(sample_index):
    keyword = open_index(sample_index).keyword
    query = "Vertrag kündigen Zähler Strom Router Rechnung"
    ids, _ = keyword.search(query, 100)
    assert len(ids) > 10  # the query matches many documents
    reads = itertools.count()
    deadline = Deadline(limit=5.0, expires=5.0, clock=lambda: float(next(reads)))
    with pytest.raises(SearchTimeoutError) as stopped:
        keyword.search(query, 100, deadline=deadline)
    assert stopped.value.stage == "keyword"
    assert 5 < next(reads) < len(ids)  # stopped midway, a few documents in
    generous = Deadline(limit=1e6, expires=1e6, clock=lambda: float(next(reads)))
    assert keyword.search(query, 100, deadline=generous)[0] == ids
    allowed = set(ids[::2])  # a filtered search (visibility, language) keeps its filter
    docnums = keyword.docnums_of(allowed)
    filtered = keyword.search(query, 100, docnums)[0]
    assert set(filtered) == allowed and keyword.search(query, 100, docnums,
                                                       deadline=generous)[0] == filtered
    short = Deadline(limit=5.0, expires=next(reads) + 5.0, clock=lambda: float(next(reads)))
    with pytest.raises(SearchTimeoutError):
        keyword.search(query, 100, docnums, deadline=short)


@pytest.mark.parametrize("slow", ["embedding", "keyword"])
def test_a_search_past_its_time_limit_is_answered_503(tmp_path, sample_index, slow):
    embedder = SlowEmbedder() if slow == "embedding" else FakeEmbedder()
    retrievers = None
    if slow == "keyword":
        retrievers = (DenseRetriever(), SlowKeywordRetriever())
    app = limited_app(tmp_path, sample_index, embedder, retrievers)
    client = app.test_client()
    key = Components.of(app).keys.create("bot", "Bot")[1]
    for method, path, body in (
            ("GET", "/api/v1/search?q=Zählerstand+melden", None),
            ("POST", "/api/v1/bot/turn", {"conversation_id": "c1", "message": "Zählerstand"})):
        response = client.open(path, method=method, json=body,
                               headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 503, path
        error = response.get_json()["error"]
        assert error["code"] == "search_timeout" and f"{slow} stage" in error["message"]
        assert response.headers["Retry-After"] == "1"
        assert problems_of(path, method, response, set()) == []
    page = client.get("/?q=Abschlag ändern")  # a new query: a cached vector costs nothing
    assert page.status_code == 503 and "Abschlag ändern" in page.text
    assert problems_of("/", "GET", page, set()) == []
    assert Components.of(app).service.feedback.counts()["searches"] == 0  # none logged


def test_a_fast_search_is_not_limited(tmp_path, sample_index, fake_embedder):
    client = limited_app(tmp_path, sample_index, fake_embedder).test_client()
    response = client.get("/api/v1/search?q=Zählerstand+melden")
    assert response.status_code == 200 and response.get_json()["results"]


def test_a_long_assist_text_is_stopped_between_two_batches(tmp_path, sample_index):
    embedder = SlowEmbedder(fast=1)  # the search is fast, matching the sentences is slow
    app = limited_app(tmp_path, sample_index, embedder, batch_size=4)
    key = Components.of(app).keys.create("agent", "Team Süd")[1]
    sentences = [f"Mein Zähler Nummer {n} zeigt seit gestern einen falschen Stand an."
                 for n in range(40)]
    response = app.test_client().post("/api/v1/assist", json={"text": " ".join(sentences)},
                                      headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "search_timeout"
    assert "assist stage" in response.get_json()["error"]["message"]
    batches = embedder.calls - 1
    assert batches == 1  # SLOW > LIMIT: the first batch already ran past it, of 10
