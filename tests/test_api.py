import dataclasses
import re

import pytest

from kbsearch.content.markdown import render_markdown
from kbsearch.http.context import Components


def test_search_returns_ranked_results(client):
    response = client.get("/api/v1/search", query_string={"q": "Zählerstand melden", "k": 3})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) >= {"search_id", "query", "took_ms", "results"}
    assert len(body["results"]) == 3
    first = body["results"][0]
    assert first["id"] == "zaehlerstand-melden"
    assert first["url"] == "/articles/zaehlerstand-melden"
    assert set(first) >= {"id", "title", "url", "snippet", "probability", "scores",
                          "language", "tags", "updated"}
    assert 0 <= first["probability"] <= 1 and "dense" in first["scores"]
    assert first["snippet"] and first["snippet"] != first["title"]


def test_search_filters(client):
    body = client.get("/api/v1/search?q=meter+reading&lang=en&k=5").get_json()
    assert body["results"] and {r["language"] for r in body["results"]} == {"en"}


@pytest.mark.parametrize(
    ("query", "status", "code", "words"),
    [
        ("", 400, "invalid_parameter", "q:"),
        ("q=", 400, "invalid_parameter", "empty"),
        ("q=" + "x" * 2_000, 400, "invalid_parameter", "characters"),
        ("q=" + "x" * 10_000, 414, "uri_too_long", "bytes"),
        ("q=a&k=0", 400, "invalid_parameter", "k:"),
        ("q=a&k=99999", 400, "invalid_parameter", "k:"),
        ("q=a&k=abc", 400, "invalid_parameter", "k:"),
        ("q=a&lang=fr", 400, "invalid_parameter", "lang:"),
        ("q=a&colour=blue", 400, "unknown_parameter", "colour"),
    ],
)
def test_bad_search_requests_get_the_error_shape(client, query, status, code, words):
    response = client.get(f"/api/v1/search?{query}")
    assert response.status_code == status
    body = response.get_json()
    assert body["error"]["code"] == code and words in body["error"]["message"]


def test_article_route(client):
    body = client.get("/api/v1/articles/zaehlerstand-melden").get_json()
    assert body["id"] == "zaehlerstand-melden"
    assert body["markdown"].startswith("# ")
    assert body["html"].startswith("<h1>")
    assert "path" not in body and "content_hash" not in body


@pytest.mark.parametrize("article_id", ["gibt-es-nicht", "kulanz-gutschrift-regeln",
                                        "dynamischer-stromtarif", "isdn-abschaltung-ip-telefonie"])
def test_unknown_internal_or_unpublished_articles_are_404(client, article_id):
    response = client.get(f"/api/v1/articles/{article_id}")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_unknown_route_and_wrong_method_use_the_error_shape(client):
    assert client.get("/api/v1/nope").get_json()["error"]["code"] == "not_found"
    response = client.post("/api/v1/search")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("delete", "/api/v1/feedback", "OPTIONS, POST"),
    ("put", "/api/v1/articles/zaehlerstand-melden", "GET, HEAD, OPTIONS"),
    ("post", "/articles/zaehlerstand-melden", "GET, HEAD, OPTIONS"),
    ("delete", "/rueckruf", "GET, HEAD, OPTIONS, POST"),
    ("patch", "/admin/login", "GET, HEAD, OPTIONS, POST"),
])
def test_a_wrong_method_is_told_which_ones_are_allowed(client, method, path, allowed):
    response = getattr(client, method)(path)
    assert response.status_code == 405 and response.headers["Allow"] == allowed


def test_healthz(client, sample_service):
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok"
    assert body["index_version"] == sample_service.index().version
    assert body["articles"] == len(sample_service.index().articles)


def test_openapi_documents_every_route(app, client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    documented = set(document["paths"])
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.replace("<article_id>", "{id}"))
        assert path in documented, path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in document["paths"][path], (method, path)


def test_markdown_is_sanitised():
    html = render_markdown("Hallo <script>alert(1)</script> [x](javascript:alert(1))")
    assert "<script" not in html and "javascript:" not in html


REMOTE_IMAGES = ('![Zähler](https://tracker.example/z.png) ![Logo](/static/logo.png) '
                 '![x](//tracker.example/y.png) <img src="HTTPS://TRACKER.EXAMPLE/w.gif" '
                 'srcset="https://tracker.example/2x.png 2x">')


def test_images_from_other_sites_lose_their_address_unless_kept():
    html = render_markdown(REMOTE_IMAGES)
    assert "tracker.example" not in html.lower()
    assert '<img alt="Logo" src="/static/logo.png">' in html and 'alt="Zähler"' in html
    kept = render_markdown(REMOTE_IMAGES, remote_images=True)
    assert 'src="https://tracker.example/z.png"' in kept


def test_the_remote_images_setting_reaches_the_api_and_the_faq_page(tmp_path, sample_index,
                                                                    fake_embedder):
    from kbsearch.api import create_app
    from kbsearch.content.articles import parse_article
    from kbsearch.service import SearchService

    from .conftest import ARTICLES, make_settings

    for policy, seen in (("drop", False), ("keep", True)):
        settings = make_settings(tmp_path / policy, index=sample_index, remote_images=policy)
        service = SearchService(settings, embedder=fake_embedder)
        source = ARTICLES / "energie" / "zaehlerstand-melden.md"
        article = parse_article(source, source.read_bytes())
        with_image = dataclasses.replace(article, body=article.body + "\n\n" + REMOTE_IMAGES)
        service.article = lambda *args, shown=with_image, **kwargs: shown
        client = create_app({"TESTING": True}, search_service=service).test_client()
        answer = client.get("/api/v1/articles/zaehlerstand-melden").get_json()
        assert ("tracker.example/z.png" in answer["html"]) is seen
        assert "tracker.example/z.png" in answer["markdown"]  # the source stays as written
        page = client.get("/articles/zaehlerstand-melden").get_data(as_text=True)
        assert ("tracker.example/z.png" in page) is seen


def test_faq_page_and_article_page(client):
    page = client.get("/?q=Zählerstand melden")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Wie melde ich meinen Zählerstand?" in text and "0800 6673 100" in text
    article = client.get("/articles/zaehlerstand-melden")
    assert article.status_code == 200 and "<h1>" in article.get_data(as_text=True)
    assert client.get("/articles/kulanz-gutschrift-regeln").status_code == 404


def test_no_stack_trace_leaks(app, client, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Components.of(app).service, "search", boom)
    response = client.get("/api/v1/search?q=x")
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"]["code"] == "internal_error"
    assert "secret" not in response.get_data(as_text=True)


def search_for(client, query="Zählerstand melden"):
    """Search without a key; return the search id, the result ids and the feedback token."""
    body = client.get("/api/v1/search", query_string={"q": query, "k": 5}).get_json()
    return body["search_id"], [r["id"] for r in body["results"]], body["feedback_token"]


def test_feedback_is_stored_once_with_the_logged_position(client, sample_service):
    search_id, ids, token = search_for(client)
    before = sample_service.feedback.counts()
    response = client.post("/api/v1/feedback", json={
        "search_id": search_id, "article_id": ids[1], "event": "click",
        "feedback_token": token})
    assert response.status_code == 201
    assert response.get_json() == {"search_id": search_id, "article_id": ids[1],
                                   "event": "click", "position": 2, "channel": "api"}
    again = client.post("/api/v1/feedback", json={
        "search_id": search_id, "article_id": ids[1], "event": "click", "channel": "api",
        "feedback_token": token})
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "duplicate_feedback"
    helpful = client.post("/api/v1/feedback", json={
        "search_id": search_id, "article_id": ids[1], "event": "helpful", "position": 2,
        "feedback_token": token})
    assert helpful.status_code == 201
    after = sample_service.feedback.counts()
    assert after["click"] == before["click"] + 1 and after["helpful"] == before["helpful"] + 1
    logged = sample_service.feedback.get_search(search_id)
    assert [r.article_id for r in logged.results] == ids
    assert logged.feature_names[0] == "dense" and len(logged.results[0].features) == len(
        logged.feature_names)


@pytest.mark.parametrize("change, status, code, words", [
    ({"search_id": "0" * 32}, 404, "unknown_search", "search_id"),
    ({"article_id": "roaming-eu"}, 400, "invalid_feedback", "article_id"),
    ({"event": "love"}, 400, "invalid_parameter", "event"),
    ({"event": None}, 400, "invalid_parameter", "event"),
    ({"channel": "fax"}, 400, "invalid_parameter", "channel"),
    ({"channel": "agent"}, 400, "invalid_parameter", "follows from the API key"),
    ({"feedback_token": "f" * 32}, 404, "unknown_search", "feedback_token"),
    ({"feedback_token": None}, 404, "unknown_search", "feedback_token"),
    ({"position": 7}, 400, "invalid_feedback", "position"),
    ({"position": True}, 400, "invalid_parameter", "position"),
    ({"position": "1"}, 400, "invalid_parameter", "position"),
    ({"user": "x"}, 400, "unknown_parameter", "user"),
])
def test_bad_feedback_is_refused_with_the_field_named(client, change, status, code, words):
    search_id, ids, token = search_for(client, "Router blinkt rot")
    body = {"search_id": search_id, "article_id": ids[0], "event": "click",
            "feedback_token": token, **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = client.post("/api/v1/feedback", json=body)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code and words in error["message"]


def test_feedback_needs_a_json_object(client):
    for data in ("not json", "[1, 2]"):
        response = client.post("/api/v1/feedback", data=data,
                               content_type="application/json")
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "invalid_body"


INTERNAL = {"kulanz-gutschrift-regeln", "kulanz-gutschrift-regeln-en", "eskalation-pfade",
            "identitaetspruefung-telefon", "kuendigung-rueckgewinnung", "ratenzahlung-anlegen",
            "sperrandrohung-stromsperre", "stoerungsticket-internet", "zaehlerstand-korrigieren",
            "notfaelle-am-telefon", "preiserhoehung-argumentation", "english-service-queue-en"}
INTERNAL_QUERIES = ["Kulanz Gutschrift Regeln", "Eskalation an Teamleitung",
                    "Identität am Telefon prüfen", "Ratenzahlung anlegen", "Stromsperre androhen"]
INTERNAL_CATEGORIES = ["internet", "konto", "rechnung", "service", "tarife", "vertrag", "zaehler",
                       "zahlung"]


@pytest.fixture
def keyed(tmp_path, sample_index, fake_embedder):
    """An app whose key file holds one key per role; returns (client, keys by role)."""
    from kbsearch.api import create_app
    from kbsearch.service import SearchService
    from kbsearch.stores.keys import KeyStore

    from .conftest import make_settings

    settings = make_settings(tmp_path, index=sample_index)
    store = KeyStore(settings.keys_file)
    keys = {role: store.create(role, f"test {role}")[1] for role in ("bot", "agent", "editor")}
    app = create_app({"TESTING": True},
                     search_service=SearchService(settings, embedder=fake_embedder))
    return app.test_client(), keys


@pytest.mark.slow  # every route, every role: several seconds
def test_no_route_shows_internal_articles_to_the_public_or_bots(keyed):
    client, keys = keyed
    for headers in ({}, {"Authorization": f"Bearer {keys['bot']}"},
                    {"X-API-Key": keys["bot"]}):
        for query in INTERNAL_QUERIES:
            body = client.get("/api/v1/search", query_string={"q": query, "k": 100},
                              headers=headers).get_json()
            assert not {r["id"] for r in body["results"]} & INTERNAL, (headers, query)
            for page_url in ("/", "/suche/fragment"):
                page = client.get(page_url, query_string={"q": query}, headers=headers)
                assert not any(re.search(f"/articles/{i}[\"?]", page.text) for i in INTERNAL)
        for article_id in INTERNAL:
            assert client.get(f"/api/v1/articles/{article_id}",
                              headers=headers).status_code == 404
            assert client.get(f"/articles/{article_id}", headers=headers).status_code == 404
            assert client.post(f"/articles/{article_id}/vote", headers=headers,
                               data={"vote": "helpful"}).status_code == 404
        for category in INTERNAL_CATEGORIES:
            topic = client.get(f"/themen/{category}", headers=headers)
            assert not any(re.search(f"/articles/{i}[\"?]", topic.text) for i in INTERNAL)
        turns = [client.post("/api/v1/bot/turn", headers=headers, json={
            "conversation_id": f"leak-{n}", "message": query})
            for n, query in enumerate(INTERNAL_QUERIES)]
        for turn in turns:
            if not headers:
                assert turn.status_code == 401  # the bot route needs a key
                continue
            body = turn.get_json()
            shown = [body["article"]] + body["alternatives"] if body["article"] else []
            assert not {a["id"] for a in shown} & INTERNAL
        assist = client.post("/api/v1/assist", headers=headers, json={"text": "Kulanz Regeln"})
        assert assist.status_code in (401, 403)  # agent assist is for agents and editors
    listing = client.get("/").text
    assert not any(re.search(f"/articles/{i}[\"?]", listing) for i in INTERNAL)
    # the check above looks for links written the way the page writes them
    assert re.search(r'/articles/zaehlerstand-melden[?"]', client.get("/", query_string={
        "q": "Zählerstand melden"}).text)


def test_agents_and_editors_see_internal_articles(keyed):
    client, keys = keyed
    for role in ("agent", "editor"):
        headers = {"Authorization": f"Bearer {keys[role]}"}
        body = client.get("/api/v1/search", query_string={"q": "Kulanz Gutschrift Regeln"},
                          headers=headers).get_json()
        assert body["results"][0]["id"] in INTERNAL
        response = client.get("/api/v1/articles/eskalation-pfade", headers=headers)
        assert response.status_code == 200 and response.get_json()["audience"] == "internal"


def test_a_bad_api_key_is_refused_not_treated_as_public(keyed, tmp_path):
    client, _ = keyed
    for headers in ({"Authorization": "Bearer kbs_00000000_wrong"}, {"X-API-Key": "nope"}):
        response = client.get("/api/v1/search", query_string={"q": "Router"}, headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "invalid_api_key"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_agents_list_and_close_callback_requests(keyed, tmp_path):
    from kbsearch.stores.callbacks import CallbackRequest

    client, keys = keyed
    store = Components.of(client.application).callbacks
    first = store.add(CallbackRequest("Erika Muster", "+49 30 1234567", "morning",
                                      "Abschlag zu hoch", "de", "search: Abschlag"), now=1000.0)
    second = store.add(CallbackRequest("John Doe", "0301234567", "asap", "Router offline",
                                       "en"), now=2000.0)
    agent = {"X-API-Key": keys["agent"]}
    listed = client.get("/api/v1/callbacks", headers=agent)
    assert listed.status_code == 200
    assert [c["reference"] for c in listed.get_json()["callbacks"]] == [
        second.reference, first.reference]
    assert listed.get_json()["callbacks"][1] == {
        "reference": first.reference, "created": "1970-01-01T00:16:40+00:00",
        "status": "open", "name": "Erika Muster", "phone": "+49 30 1234567",
        "preferred_time": "morning", "language": "de", "description": "Abschlag zu hoch",
        "context": "search: Abschlag"}
    done = client.post(f"/api/v1/callbacks/{first.reference}", headers=agent,
                       json={"status": "done"})
    assert done.status_code == 200 and done.get_json()["status"] == "done"
    assert [c["reference"] for c in client.get(
        "/api/v1/callbacks", headers=agent).get_json()["callbacks"]] == [second.reference]
    editor = {"Authorization": f"Bearer {keys['editor']}"}
    everything = client.get("/api/v1/callbacks?status=all&limit=1", headers=editor)
    assert [c["reference"] for c in everything.get_json()["callbacks"]] == [second.reference]

    # callers who may not see customers' phone numbers
    assert client.get("/api/v1/callbacks").status_code == 401
    forbidden = client.get("/api/v1/callbacks", headers={"X-API-Key": keys["bot"]})
    assert forbidden.status_code == 403 and forbidden.get_json()["error"]["code"] == "forbidden"
    assert client.post(f"/api/v1/callbacks/{second.reference}", json={"status": "done"},
                       headers={"X-API-Key": keys["bot"]}).status_code == 403

    # bad input names the parameter
    for query, parameter in (("status=closed", "status"), ("limit=0", "limit"),
                             ("limit=x", "limit"), ("sort=name", "sort")):
        bad = client.get(f"/api/v1/callbacks?{query}", headers=agent)
        assert bad.status_code == 400, query
        assert bad.get_json()["error"]["message"].startswith(f"{parameter}:"), query
    unknown = client.post("/api/v1/callbacks/RR-AAAAAA", headers=agent, json={"status": "done"})
    assert unknown.status_code == 404 and "RR-AAAAAA" in unknown.get_json()["error"]["message"]
    bad_status = client.post(f"/api/v1/callbacks/{second.reference}", headers=agent,
                             json={"status": "called"})
    assert bad_status.status_code == 400
    assert bad_status.get_json()["error"]["message"].startswith("status:")
    extra = client.post(f"/api/v1/callbacks/{second.reference}", headers=agent,
                        json={"status": "done", "note": "x"})
    assert extra.status_code == 400 and "note" in extra.get_json()["error"]["message"]
    assert [c["status"] for c in client.get("/api/v1/callbacks?status=all",
                                            headers=agent).get_json()["callbacks"]] == [
        "open", "done"]  # nothing changed by the bad requests


def test_control_characters_never_reach_the_log(client, sample_service):
    found = client.get("/api/v1/search", query_string={"q": "Router\x00 blinkt\x1b rot"})
    assert found.status_code == 200
    assert found.get_json()["query"] == "Router blinkt rot"
    stored = sample_service.feedback.get_search(found.get_json()["search_id"])
    assert stored.query == "Router blinkt rot"
    empty = client.get("/api/v1/search", query_string={"q": "\x00\x07"})
    assert empty.status_code == 400 and empty.get_json()["error"]["code"] == "invalid_parameter"
