"""Who may do what: every route for every kind of caller, feedback bound to the searcher.

The table covers every route the app has (a new route fails the test until it is added):
each is called as the public (no key), with a bot, an agent and an editor key, with a
revoked key and with a wrong one. Every answer is checked for what must not be in it:
internal articles, customers' callback requests, API keys, dashboard data.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from kbsearch.http.context import Components
from kbsearch.stores.callbacks import CallbackRequest

from .conftest import make_settings

ROLES = ("none", "bot", "agent", "editor", "revoked", "wrong")
WITH_KEY = ("bot", "agent", "editor")
INTERNAL_ROLES = ("agent", "editor")
INTERNAL_QUERY = "Kulanz Gutschrift Regeln"  # answered with internal articles for agents
CUSTOMER = ("Erika Musterfrau", "+49 30 9876543")
TOKEN_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Route:
    """How to call one route, who may, and what it answers those who may."""

    call: Callable[[dict[str, Any], str], dict[str, Any]]  # (served, role) -> request
    roles: tuple[str, ...] | None  # roles with a key that may call it; None: everybody
    ok: tuple[int, ...] = (200,)
    checks_keys: bool = True  # the route reads API keys (the FAQ pages ignore them)


def _get(path: str, **query: str) -> Callable[[dict[str, Any], str], dict[str, Any]]:
    return lambda served, role: {"method": "GET", "path": path.format(**served),
                                 "query_string": query}


def _feedback(served: dict[str, Any], role: str) -> dict[str, Any]:
    search = served["searches"].get(role, served["searches"]["none"])
    return {"method": "POST", "path": "/api/v1/feedback",
            "json": {"search_id": search["search_id"], "event": "click",
                     "article_id": search["results"][0]["id"],
                     "feedback_token": search["feedback_token"]}}


def _post(path: str, **body: Any) -> Callable[[dict[str, Any], str], dict[str, Any]]:
    def call(served: dict[str, Any], role: str) -> dict[str, Any]:
        filled = {k: v.format(role=role, **served) if isinstance(v, str) else v
                  for k, v in body.items()}
        return {"method": "POST", "path": path.format(**served), "json": filled}
    return call


def _form(path: str, **form: str) -> Callable[[dict[str, Any], str], dict[str, Any]]:
    return lambda served, role: {"method": "POST", "path": path.format(**served),
                                 "data": dict(form)}


AGENTS = INTERNAL_ROLES
EDITORS = ("editor",)
PAGE = dict(checks_keys=False)
ADMIN = dict(checks_keys=False, ok=(303,))  # an API key opens no dashboard session
ADMIN_FORM = dict(checks_keys=False, ok=(400,))  # no session, no CSRF token: refused
TABLE: dict[tuple[str, str], Route] = {
    ("/api/v1/search", "GET"): Route(_get("/api/v1/search", q=INTERNAL_QUERY, k="20"), None),
    ("/api/v1/articles/<article_id>", "GET"): Route(_get("/api/v1/articles/{public}"), None),
    ("/api/v1/feedback", "POST"): Route(_feedback, None, ok=(201,)),
    ("/api/v1/bot/turn", "POST"): Route(
        _post("/api/v1/bot/turn", conversation_id="access-{role}", message=INTERNAL_QUERY),
        ("bot", "agent", "editor")),
    ("/api/v1/assist", "POST"): Route(
        _post("/api/v1/assist", text=f"Hallo, {INTERNAL_QUERY}? Gruß"), AGENTS),
    ("/api/v1/callbacks", "GET"): Route(_get("/api/v1/callbacks", status="all"), AGENTS),
    ("/api/v1/callbacks/<reference>", "POST"): Route(
        _post("/api/v1/callbacks/{reference}", status="open"), AGENTS),
    ("/api/v1/admin/reindex", "GET"): Route(_get("/api/v1/admin/reindex"), EDITORS,
                                            ok=(200, 404)),
    ("/api/v1/admin/reindex", "POST"): Route(_post("/api/v1/admin/reindex"), EDITORS,
                                             ok=(202, 409, 503)),
    ("/api/v1/openapi.json", "GET"): Route(_get("/api/v1/openapi.json"), None),
    ("/healthz", "GET"): Route(_get("/healthz"), None, checks_keys=False),
    ("/", "GET"): Route(_get("/", q=INTERNAL_QUERY), None, **PAGE),
    ("/suche/fragment", "GET"): Route(_get("/suche/fragment", q=INTERNAL_QUERY), None, **PAGE),
    ("/themen/<category>", "GET"): Route(_get("/themen/rechnung"), None, **PAGE),
    ("/articles/<article_id>", "GET"): Route(_get("/articles/{public}"), None, **PAGE),
    ("/articles/<article_id>/vote", "GET"): Route(_get("/articles/{public}/vote"), None,
                                                  ok=(302,), checks_keys=False),
    ("/articles/<article_id>/vote", "POST"): Route(
        _form("/articles/{public}/vote", vote="helpful"), None, **PAGE),
    ("/rueckruf", "GET"): Route(_get("/rueckruf"), None, **PAGE),
    ("/rueckruf", "POST"): Route(_form("/rueckruf", name="x"), None, ok=(400,), checks_keys=False),
    ("/rueckruf/danke", "GET"): Route(_get("/rueckruf/danke", nr="RR-AAAAAA"), None, **PAGE),
    ("/static/<path:filename>", "GET"): Route(_get("/static/style.css"), None, **PAGE),
    ("/admin", "GET"): Route(_get("/admin"), None, **ADMIN),
    ("/admin/login", "GET"): Route(_get("/admin/login"), None, **PAGE),
    ("/admin/login", "POST"): Route(_form("/admin/login", key="x"), None, **ADMIN_FORM),
    ("/admin/logout", "POST"): Route(_form("/admin/logout"), None, **ADMIN),
    ("/admin/reindex", "POST"): Route(_form("/admin/reindex"), None, **ADMIN),
    ("/admin/weights/promote", "POST"): Route(_form("/admin/weights/promote", version="x"),
                                              None, **ADMIN),
    ("/admin/weights/rollback", "POST"): Route(_form("/admin/weights/rollback"), None, **ADMIN),
    ("/admin/callbacks/<reference>", "POST"): Route(
        _form("/admin/callbacks/{reference}", status="done"), None, **ADMIN),
    ("/admin/static/<path:filename>", "GET"): Route(_get("/admin/static/admin.css"), None,
                                                    **PAGE),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory, sample_index, fake_embedder) -> Iterator[dict[str, Any]]:
    """An app with a key per role, a revoked key, a customer's callback request, searches.

    It has its own copy of the sample index, which the editor's reindex request rebuilds.
    """
    from kbsearch.api import create_app
    from kbsearch.service import SearchService

    home = tmp_path_factory.mktemp("access")
    shutil.copytree(sample_index, home / "index")
    settings = make_settings(home, index=home / "index")
    app = create_app({"TESTING": True},
                     search_service=SearchService(settings, embedder=fake_embedder))
    parts = Components.of(app)
    keys = {role: parts.keys.create(role, f"access {role}") for role in WITH_KEY}
    revoked = parts.keys.create("editor", "access revoked")
    parts.keys.revoke(revoked[0].key_id)
    secrets = {role: key for role, (_, key) in keys.items()}
    secrets.update(revoked=revoked[1], wrong="kbs_00000000_" + "x" * 32, none="")
    stored = parts.callbacks.add(CallbackRequest(*CUSTOMER, "morning", "Abschlag", "de"))
    client = app.test_client()
    searches = {role: client.get("/api/v1/search", headers=headers(secrets[role]),
                                 query_string={"q": "Router blinkt rot"}).get_json()
                for role in ("none", *WITH_KEY)}
    internal = {a.id for a in parts.service.articles(visibility="internal")
                if a.audience == "internal"}
    yield {"app": app, "client": client, "keys": secrets, "searches": searches,
           "reference": stored.reference, "public": "zaehlerstand-melden",
           "internal": internal,
           "key_ids": [k.key_id for k, _ in keys.values()] + [revoked[0].key_id],
           "digests": [k.digest for k, _ in keys.values()] + [revoked[0].digest]}
    deadline = time.monotonic() + 120  # let the editor's reindex finish before cleaning up
    while (job := parts.reindex.latest()) is not None and job.state in ("queued", "running"):
        assert time.monotonic() < deadline, "the reindex did not finish"
        time.sleep(0.1)


def headers(key: str) -> dict[str, str]:
    """Return the headers that send an API key (none for the empty key)."""
    return {"Authorization": f"Bearer {key}"} if key else {}


def expected(route: Route, role: str) -> tuple[int, ...]:
    """Return the statuses a role may get from a route."""
    if not route.checks_keys:
        return route.ok
    if role in ("revoked", "wrong"):
        return (401,)
    if route.roles is None or role in route.roles:
        return route.ok
    return (401,) if role == "none" else (403,)


def call(served: dict[str, Any], route: Route, role: str) -> Any:
    """Send a route's request as a role and return the answer."""
    request = route.call(served, role)
    return served["client"].open(request.pop("path"), headers=headers(served["keys"][role]),
                                 **request)


def test_the_table_covers_every_route(served):
    rules = {(rule.rule, method) for rule in served["app"].url_map.iter_rules()
             for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert rules == set(TABLE), "add the new route to TABLE with who may call it"


@pytest.mark.parametrize("role", ROLES)
def test_every_route_answers_each_role_as_it_may_and_leaks_nothing(served, role):
    callers_see_internal = role in INTERNAL_ROLES
    for (rule, method), route in TABLE.items():
        response = call(served, route, role)
        where = f"{method} {rule} as {role}"
        assert response.status_code in expected(route, role), (where, response.status_code)
        body = response.get_data(as_text=True)
        response.close()
        if route.checks_keys and response.status_code >= 400:
            assert response.is_json and set(response.get_json()["error"]) == {
                "code", "message"}, where
        shown_internal = {i for i in served["internal"] if re.search(rf"\b{i}\b", body)}
        if not (callers_see_internal and route.checks_keys):
            assert not shown_internal, (where, shown_internal)
        may_read_callbacks = callers_see_internal and rule.startswith("/api/v1/callbacks")
        if not may_read_callbacks:
            assert CUSTOMER[0] not in body and CUSTOMER[1] not in body, where
        key_ids = served["key_ids"] if role != "editor" else []  # editors manage keys
        for secret in (*[k for k in served["keys"].values() if k], *served["digests"],
                       *key_ids):
            assert secret not in body, (where, "an API key or its id")
        assert "Ranking weights" not in body and "kbsearch_admin=" not in str(
            response.headers), where


def test_the_positive_cases_of_the_table_do_show_what_they_guard(served):
    """The checks above can fail: agents get internal articles and callback requests."""
    agent = headers(served["keys"]["agent"])
    client = served["client"]
    found = client.get("/api/v1/search", query_string={"q": INTERNAL_QUERY, "k": 20},
                       headers=agent).get_json()
    assert {r["id"] for r in found["results"]} & served["internal"]
    listed = client.get("/api/v1/callbacks?status=all", headers=agent).get_data(as_text=True)
    assert CUSTOMER[0] in listed


def test_an_editor_session_is_the_only_way_into_the_dashboard(served):
    client = served["app"].test_client()
    for role in ("bot", "agent", "revoked", "wrong"):
        form = client.get("/admin/login")
        token = TOKEN_FIELD.search(form.text).group(1)
        refused = client.post("/admin/login", data={"key": served["keys"][role],
                                                    "csrf_token": token})
        assert refused.status_code in (401, 403), role
        assert client.get("/admin").status_code == 303, role
    form = client.get("/admin/login")
    token = TOKEN_FIELD.search(form.text).group(1)
    assert client.post("/admin/login", data={"key": served["keys"]["editor"],
                                             "csrf_token": token}).status_code == 303
    page = client.get("/admin")
    assert page.status_code == 200 and "Ranking weights" in page.text


# Feedback comes only from the caller that made the search


def feedback(client, search: dict[str, Any], key: str = "", **extra: Any) -> Any:
    """Post a click on the first result of a search, with a key and extra fields."""
    return client.post("/api/v1/feedback", headers=headers(key), json={
        "search_id": search["search_id"], "article_id": search["results"][0]["id"],
        "event": extra.pop("event", "click"), **extra})


@pytest.fixture
def keyed(tmp_path, sample_index, fake_embedder):
    """A fresh app with two agent keys and a bot key; returns (client, keys, service)."""
    from kbsearch.api import create_app
    from kbsearch.service import SearchService

    service = SearchService(make_settings(tmp_path, index=sample_index), embedder=fake_embedder)
    app = create_app({"TESTING": True}, search_service=service)
    store = Components.of(app).keys
    keys = {name: store.create(role, name)[1]
            for name, role in (("agent", "agent"), ("agent2", "agent"), ("bot", "bot"))}
    return app.test_client(), keys, service


def test_feedback_on_an_agents_search_is_taken_from_that_key_only(keyed):
    client, keys, service = keyed
    search = client.get("/api/v1/search", query_string={"q": INTERNAL_QUERY},
                        headers=headers(keys["agent"])).get_json()
    assert search["feedback_token"] is None  # a keyed search needs no token
    keyless = client.get("/api/v1/search", query_string={"q": "Router"}).get_json()
    for key, extra in (("", {}), ("", {"feedback_token": keyless["feedback_token"]}),
                       (keys["agent2"], {}), (keys["bot"], {})):
        refused = feedback(client, search, key, event="resolved", **extra)
        assert refused.status_code == 404, (key, extra)
        assert refused.get_json()["error"]["code"] == "unknown_search"
    never = feedback(client, {**search, "search_id": "0" * 32}, keys["agent2"])
    assert never.get_json()["error"]["message"].replace("0" * 32, search["search_id"]) == (
        refused.get_json()["error"]["message"])  # the same answer: no oracle of searches
    assert service.feedback.counts()["resolved"] == 0
    for key, channel in (("", "agent"), (keys["agent"], "faq"), (keys["agent"], "api")):
        wrong_channel = feedback(client, search, key, event="resolved", channel=channel)
        assert wrong_channel.status_code == 400
        assert "follows from the API key" in wrong_channel.get_json()["error"]["message"]
    stored = feedback(client, search, keys["agent"], event="resolved")
    assert stored.status_code == 201 and stored.get_json()["channel"] == "agent"
    assert [(e.event, e.channel) for e in service.feedback.events()] == [("resolved", "agent")]


def test_a_keyless_search_takes_feedback_with_its_own_token_only(keyed):
    client, keys, service = keyed
    first, second = (client.get("/api/v1/search", query_string={"q": q}).get_json()
                     for q in ("Router blinkt rot", "Zählerstand melden"))
    assert first["feedback_token"] and first["feedback_token"] != second["feedback_token"]
    for token in (None, second["feedback_token"], "0" * 32, first["feedback_token"].upper(),
                  first["feedback_token"][:-1] + "x"):
        assert feedback(client, first, feedback_token=token).status_code in (400, 404), token
    stored = feedback(client, first, feedback_token=first["feedback_token"])
    assert stored.status_code == 201 and stored.get_json()["channel"] == "api"
    logged = {s.search_id: s for s in service.feedback.searches()}
    assert logged[first["search_id"]].owner == ""


def test_searches_and_feedback_are_logged_under_the_channel_of_the_key(keyed):
    client, keys, service = keyed
    for key, channel in (("", "api"), (keys["agent"], "agent"), (keys["bot"], "bot")):
        found = client.get("/api/v1/search", query_string={"q": "Router"},
                           headers=headers(key)).get_json()
        logged = service.feedback.get_search(found["search_id"])
        assert logged.channel == channel
        stored = feedback(client, found, key, feedback_token=found["feedback_token"])
        assert stored.get_json()["channel"] == channel


def test_a_forged_faq_link_records_no_click(keyed):
    client, keys, service = keyed
    search = client.get("/api/v1/search", query_string={"q": "Zählerstand melden"},
                        headers=headers(keys["agent"])).get_json()
    keyless = client.get("/api/v1/search", query_string={"q": "Zählerstand melden"}).get_json()
    article = search["results"][0]["id"]
    assert keyless["results"][0]["id"] == article
    for query in (f"s={search['search_id']}&p=1", f"s={keyless['search_id']}&p=1",
                  f"s={search['search_id']}&p=1&t={keyless['feedback_token']}"):
        assert client.get(f"/articles/{article}?{query}").status_code == 200
    assert service.feedback.counts()["click"] == 0
    good = f"s={keyless['search_id']}&p=1&t={keyless['feedback_token']}"
    assert client.get(f"/articles/{article}?{good}").status_code == 200
    assert [(e.search_id, e.channel) for e in service.feedback.events()] == [
        (keyless["search_id"], "faq")]


# Keys: compared in constant time, and guessing them is slowed down


def test_every_stored_key_is_compared_whichever_matches(keyed, monkeypatch):
    client, keys, service = keyed
    store = Components.of(client.application).keys
    compared: list[str] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr("kbsearch.stores.keys.hmac.compare_digest", counting)
    stored = len(store.list())
    for key in (keys["agent"], keys["bot"], "kbs_nope_nope"):
        compared.clear()
        try:
            store.authenticate(key)
        except Exception:  # noqa: BLE001 - the unknown key is refused; counted all the same
            pass
        assert len(compared) == stored, key
    assert hashlib.sha256(keys["agent"].encode()).hexdigest() in compared


def test_repeated_failed_keys_lock_the_address_out_for_a_while(tmp_path, sample_index,
                                                               fake_embedder):
    from kbsearch.api import create_app
    from kbsearch.service import SearchService

    settings = make_settings(tmp_path, index=sample_index,
                             rate_limit_auth_failures="3 per minute")
    app = create_app({"TESTING": True},
                     search_service=SearchService(settings, embedder=fake_embedder))
    good = Components.of(app).keys.create("editor", "editor")[1]
    client = app.test_client()
    here, elsewhere = {"REMOTE_ADDR": "10.1.1.1"}, {"REMOTE_ADDR": "10.2.2.2"}
    for n in range(3):
        bad = client.get("/api/v1/search?q=Router", environ_base=here,
                         headers=headers(f"kbs_guess{n}_xxxx"))
        assert bad.status_code == 401
    locked = client.get("/api/v1/search?q=Router", environ_base=here, headers=headers(good))
    assert locked.status_code == 429
    assert locked.get_json()["error"]["code"] == "too_many_failed_keys"
    assert 1 <= int(locked.headers["Retry-After"]) <= 60
    assert client.get("/api/v1/search?q=Router", environ_base=here).status_code == 200
    assert client.get("/api/v1/search?q=Router", environ_base=elsewhere,
                      headers=headers(good)).status_code == 200
    form = client.get("/admin/login", environ_base=here)
    token = TOKEN_FIELD.search(form.text).group(1)
    login = client.post("/admin/login", environ_base=here,
                        data={"key": good, "csrf_token": token})
    assert login.status_code == 429 and "Retry-After" in login.headers
    assert "too many wrong keys" in login.text
