"""Rate limits per client: public callers by address, keys by key, the callback form apart."""

import sqlite3

import pytest

from kbsearch.config import load_settings
from kbsearch.errors import ConfigError

from .conftest import make_settings

SEARCH = "/api/v1/search?q=Zählerstand"


def limited_app(tmp_path, sample_index, embedder, **limits):
    """An app over the sample index with the given limit settings (others off)."""
    from kbsearch.api import create_app
    from kbsearch.service import SearchService
    from kbsearch.stores.keys import KeyStore

    settings = make_settings(tmp_path, index=sample_index, **limits)
    key = KeyStore(settings.keys_file).create("agent", "test agent")[1]
    app = create_app({"TESTING": True}, search_service=SearchService(settings, embedder=embedder))
    return app, key


def test_a_public_client_over_its_limit_gets_429_with_retry_after(tmp_path, sample_index,
                                                                  fake_embedder):
    app, key = limited_app(tmp_path, sample_index, fake_embedder, rate_limit="3 per minute",
                           rate_limit_keyed="5 per minute")
    client = app.test_client()
    assert [client.get(SEARCH).status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get(SEARCH)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert "3 per 1 minute" in refused.get_json()["error"]["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert client.get("/healthz").status_code == 200  # never limited
    static = client.get("/static/style.css")
    static.close()
    assert static.status_code == 200
    # a key has its own, larger allowance
    keyed = [client.get(SEARCH, headers={"X-API-Key": key}).status_code for _ in range(6)]
    assert keyed == [200] * 5 + [429]
    # another address is not affected
    other = client.get(SEARCH, environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert other.status_code == 200


def test_the_faq_page_over_the_limit_says_so_in_the_interface_language(tmp_path, sample_index,
                                                                       fake_embedder):
    app, _ = limited_app(tmp_path, sample_index, fake_embedder, rate_limit="2 per minute")
    client = app.test_client()
    assert client.get("/").status_code == 200
    assert client.get("/suche/fragment?q=Abschlag").status_code == 200
    page = client.get("/?q=Abschlag")
    assert page.status_code == 429 and "Einen Moment bitte" in page.text
    assert "Traceback" not in page.text and "0800 6673 100" in page.text  # the way to a human
    english = client.get("/?ui=en")
    assert english.status_code == 429 and "One moment, please" in english.text
    # the pages take no keys: a made-up one buys no fresh allowance
    assert client.get("/", headers={"X-API-Key": "kbs_made_up"}).status_code == 429


def test_forwarded_addresses_count_only_behind_trusted_proxies(tmp_path, sample_index,
                                                              fake_embedder):
    app, _ = limited_app(tmp_path, sample_index, fake_embedder, rate_limit="2 per minute")
    client = app.test_client()
    statuses = [client.get(SEARCH, headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
                for n in range(3)]
    assert statuses == [200, 200, 429]  # a header the client sets itself buys nothing

    proxied, _ = limited_app(tmp_path / "proxied", sample_index, fake_embedder,
                             rate_limit="2 per minute", trusted_proxies=1)
    client = proxied.test_client()
    for n in range(3):
        headers = {"X-Forwarded-For": f"203.0.113.{n}"}
        assert [client.get(SEARCH, headers=headers).status_code for _ in range(2)] == [200, 200]
    assert client.get(SEARCH, headers={"X-Forwarded-For": "203.0.113.0"}).status_code == 429


def test_feedback_identity_ignores_forwarded_headers_without_trusted_proxies(app):
    from kbsearch.http.context import client_identity

    identities = set()
    for forwarded in ({}, {"X-Forwarded-For": "203.0.113.5"}, {"X-Forwarded-For": "1.2.3.4"}):
        with app.test_request_context("/", headers=forwarded,
                                      environ_base={"REMOTE_ADDR": "10.0.0.1"}):
            identities.add(client_identity())
    assert len(identities) == 1


def test_callback_requests_have_their_own_small_limit(tmp_path, sample_index, fake_embedder):
    app, _ = limited_app(tmp_path, sample_index, fake_embedder, rate_limit_callbacks="2 per hour")
    client = app.test_client()
    form = {"name": "Erika Muster", "phone": "+49 30 1234567", "preferred_time": "morning",
            "description": "Abschlag zu hoch"}
    assert [client.post("/rueckruf", data=form).status_code for _ in range(3)] == [303, 303, 429]
    assert client.get("/rueckruf").status_code == 200  # reading the form is not limited
    assert client.get("/?q=Abschlag").status_code == 200  # nor is anything else
    with sqlite3.connect(tmp_path / "channels.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM callback_requests").fetchone()[0] == 2


@pytest.mark.parametrize("raw", ["lots", "5 per fortnight", "-1/minute"])
def test_a_bad_rate_limit_setting_names_the_variable(raw):
    with pytest.raises(ConfigError, match="KBSEARCH_RATE_LIMIT="):
        load_settings(environ={"KBSEARCH_RATE_LIMIT": raw})


def test_rate_limit_settings_parse():
    settings = load_settings(environ={"KBSEARCH_RATE_LIMIT": "off",
                                      "KBSEARCH_RATE_LIMIT_KEYED": "10/second;500/hour",
                                      "KBSEARCH_TRUSTED_PROXIES": "1"})
    assert (settings.rate_limit, settings.rate_limit_keyed, settings.trusted_proxies) == (
        "", "10/second;500/hour", 1)
    with pytest.raises(ConfigError, match="KBSEARCH_TRUSTED_PROXIES="):
        load_settings(environ={"KBSEARCH_TRUSTED_PROXIES": "-1"})


def test_the_openapi_document_names_the_rate_limit(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert "Retry-After" in paths["/api/v1/search"]["get"]["responses"]["429"]["headers"]
    assert "429" in paths["/rueckruf"]["post"]["responses"]
    assert "429" not in paths["/healthz"]["get"]["responses"]


@pytest.mark.parametrize(("raw", "message"), [
    ("bogus://x", "unknown storage scheme"),
    ("memcached://localhost:11211", "prerequisite not available"),
])
def test_a_bad_rate_limit_storage_names_the_variable(raw, message):
    with pytest.raises(ConfigError, match=f"KBSEARCH_RATE_LIMIT_STORAGE=.*{message}"):
        load_settings(environ={"KBSEARCH_RATE_LIMIT_STORAGE": raw})
