"""The operators' dashboard and background reindexing, through Flask's test client.

Logins, session cookies, CSRF tokens, callback requests, weights versions, and reindex jobs
that run in a background thread on the fake embedder, into a copy of the sample index.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kbsearch.http.context import Components
from kbsearch.index.builds import current_version
from kbsearch.index.reindex import (
    DIED,
    STATE_FILE,
    ReindexBoard,
    ReindexJob,
    ReindexPlan,
    ReindexRunningError,
    build,
    now_iso,
)
from kbsearch.ranking.versions import default_ranker
from kbsearch.stores.admin_sessions import SQLiteAdminSessionStore, token_digest
from kbsearch.stores.callbacks import CallbackRequest

from .conftest import ARTICLES, make_settings
from .fakes import FakeEmbedder
from .test_contract import check_documented

REINDEX = "/api/v1/admin/reindex"
KB_FILES = ("energie/zaehlerstand-melden.md", "energie/abschlag-anpassen.md",
            "telekom/router-stoerung.md", "telekom/router-stoerung-en.md",
            "intern/kulanz-gutschrift-regeln.md")
TOKEN_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
WAIT_SECONDS = 60


class GatedEmbedder(FakeEmbedder):
    """The fake embedder whose passages wait until the test lets them through."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def embed_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Say that embedding began, and wait for the release (a minute at most)."""
        self.entered.set()
        self.release.wait(WAIT_SECONDS)
        return super().embed_passages(texts, progress)


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    """Return the condition's first true value, checked every 20 ms (fail after a minute)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"waited {WAIT_SECONDS} s in vain for {what}")


@pytest.fixture
def gate() -> Iterator[GatedEmbedder]:
    """An embedder that holds builds until released (released at the end in any case)."""
    embedder = GatedEmbedder()
    yield embedder
    embedder.release.set()


@pytest.fixture
def kb(tmp_path) -> Path:
    """Five sample articles in a folder of their own."""
    folder = tmp_path / "articles"
    for name in KB_FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ARTICLES / name, folder / name)
    return folder


def make_app(tmp_path: Path, sample_index: Path, kb: Path, embedder: FakeEmbedder,
             **settings: Any) -> Any:
    """An app over a copy of the sample index that reindexes the folder kb."""
    from kbsearch.api import create_app
    from kbsearch.service import SearchService

    index = tmp_path / "index"
    if not index.exists():
        shutil.copytree(sample_index, index)
    values = make_settings(tmp_path / "data", index=index, articles=kb, **settings)
    service = SearchService(values, embedder=embedder)
    return create_app({"TESTING": True}, search_service=service)


@pytest.fixture
def app(tmp_path, sample_index, kb, fake_embedder):
    """The dashboard's app over its own copy of the sample index (64 articles)."""
    return make_app(tmp_path, sample_index, kb, fake_embedder)


@pytest.fixture
def keys(app) -> dict[str, str]:
    """An editor, an agent and a second editor key."""
    store = Components.of(app).keys
    return {name: store.create(role, name)[1] for name, role in
            (("Redaktion Nord", "editor"), ("Team Süd", "agent"), ("Redaktion Ost", "editor"))}


def editor_headers(keys: dict[str, str]) -> dict[str, str]:
    """The headers of an API request with the first editor key."""
    return {"Authorization": f"Bearer {keys['Redaktion Nord']}"}


def log_in(client, key: str) -> Any:
    """Log in through the form as a browser does; return the answer to the POST."""
    form = client.get("/admin/login")
    token = TOKEN_FIELD.search(form.text).group(1)
    return client.post("/admin/login", data={"key": key, "csrf_token": token})


def csrf_of(client) -> str:
    """Return the CSRF token of the dashboard as the logged-in client sees it."""
    page = client.get("/admin")
    assert page.status_code == 200, page.headers.get("Location")
    return TOKEN_FIELD.search(page.text).group(1)


def set_cookies(response) -> dict[str, list[str]]:
    """Return the Set-Cookie headers of an answer by cookie name."""
    found: dict[str, list[str]] = {}
    for header in response.headers.getlist("Set-Cookie"):
        found.setdefault(header.split("=", 1)[0], []).append(header)
    return found


def finished(client, headers: dict[str, str]) -> dict[str, Any]:
    """Wait until the latest reindex is no longer queued or running; return it."""
    def done() -> dict[str, Any] | None:
        job = client.get(REINDEX, headers=headers).get_json()
        return job if job["state"] in ("succeeded", "failed") else None
    return wait_for(done, "the reindex to finish")


# Logging in and out


def test_the_dashboard_sends_visitors_without_a_login_to_the_form(client, app):
    response = client.get("/admin")
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/login?notice=login_needed"
    form = client.get(response.headers["Location"])
    assert form.status_code == 200 and "Log in with an editor API key" in form.text
    refused = client.post("/admin/reindex", data={"csrf_token": "x"})
    assert refused.status_code == 303 and "/admin/login" in refused.headers["Location"]
    assert Components.of(app).reindex.latest() is None  # nothing started


def test_an_editor_key_logs_in_with_a_strict_session_cookie(client, app, keys):
    response = log_in(client, keys["Redaktion Nord"])
    assert response.status_code == 303 and response.headers["Location"] == "/admin"
    cookies = set_cookies(response)["kbsearch_admin"]
    assert sorted(re.search(r"Path=([^;]+)", c).group(1) for c in cookies) == [
        "/admin", "/api/v1/admin"]
    minutes = Components.of(app).settings.admin_session_minutes
    for cookie in cookies:
        assert "; Secure" in cookie and "; HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert f"Max-Age={minutes * 60}" in cookie
    token = cookies[0].split(";")[0].split("=", 1)[1]
    page = client.get("/admin")
    assert page.status_code == 200 and "Redaktion Nord" in page.text
    # the server keeps the session, under the token's digest only
    with sqlite3.connect(Components.of(app).settings.channels_db) as conn:
        stored = conn.execute("SELECT token_digest, key_id FROM admin_sessions").fetchall()
    assert len(stored) == 1 and stored[0][0] == token_digest(token) != token


@pytest.mark.parametrize(("key", "status", "words"), [
    ("kbs_00000000_not-a-real-key", 401, "unknown API key"),
    ("agent", 403, "role agent"),
    ("", 400, "Enter your editor API key"),
    ("revoked", 401, "revoked"),
])
def test_a_wrong_or_other_key_gets_a_message_and_no_session(client, app, keys, key, status,
                                                             words):
    if key == "agent":
        key = keys["Team Süd"]
    elif key == "revoked":
        store = Components.of(app).keys
        key_id = next(k.key_id for k in store.list() if k.name == "Redaktion Ost")
        store.revoke(key_id)
        key = keys["Redaktion Ost"]
    response = log_in(client, key)
    assert response.status_code == status
    assert words in response.text and 'role="alert"' in response.text
    assert "kbsearch_admin" not in set_cookies(response)
    assert client.get("/admin").status_code == 303


@pytest.mark.parametrize(("token", "status"), [(None, 400), ("forged", 403)])
def test_the_login_form_needs_its_own_token(client, app, keys, token, status):
    client.get("/admin/login")
    data = {"key": keys["Redaktion Nord"], **({"csrf_token": token} if token else {})}
    response = client.post("/admin/login", data=data)
    assert response.status_code == status
    assert "The form could not be accepted" in response.text
    assert "kbsearch_admin" not in set_cookies(response)


def test_logging_out_ends_the_session_at_once(client, app, keys):
    log_in(client, keys["Redaktion Nord"])
    token = client.get_cookie("kbsearch_admin", path="/admin").value
    response = client.post("/admin/logout", data={"csrf_token": csrf_of(client)})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/login?notice=logged_out"
    assert all("Max-Age=0" in c for c in set_cookies(response)["kbsearch_admin"])
    # the old token, sent again (say, by a copy of the cookie), opens nothing
    for path in ("/admin", "/api/v1/admin"):
        client.set_cookie("kbsearch_admin", token, path=path)
    again = client.get("/admin")
    assert again.status_code == 303 and again.headers["Location"].endswith("notice=ended")
    assert client.get(REINDEX).status_code == 401


def test_revoking_the_key_ends_its_sessions(client, app, keys):
    log_in(client, keys["Redaktion Nord"])
    assert client.get("/admin").status_code == 200
    store = Components.of(app).keys
    store.revoke(next(k.key_id for k in store.list() if k.name == "Redaktion Nord"))
    response = client.get("/admin")
    assert response.status_code == 303 and response.headers["Location"].endswith(
        "notice=revoked")
    with sqlite3.connect(Components.of(app).settings.channels_db) as conn:
        assert conn.execute("SELECT count(*) FROM admin_sessions").fetchone()[0] == 0
    assert "has been revoked" in client.get(response.headers["Location"]).text


def test_a_session_ends_when_its_time_is_up(tmp_path):
    store = SQLiteAdminSessionStore(tmp_path / "channels.sqlite3")
    session, token = store.create("k1", 60, now=1000.0)
    assert store.find(token, now=1059.0) == session
    assert store.find(token, now=1060.0) is None
    assert store.find("another token", now=1000.0) is None
    fresh, _ = store.create("k2", 60, now=2000.0)  # a login clears out expired sessions
    with sqlite3.connect(tmp_path / "channels.sqlite3") as conn:
        assert conn.execute("SELECT key_id FROM admin_sessions").fetchall() == [("k2",)]
    assert fresh.csrf != session.csrf and len(fresh.csrf) >= 32


def test_the_session_lasts_the_configured_minutes(tmp_path, sample_index, kb, fake_embedder):
    app = make_app(tmp_path, sample_index, kb, fake_embedder, admin_session_minutes=7)
    key = Components.of(app).keys.create("editor", "x")[1]
    client = app.test_client()
    before = time.time()
    cookie = set_cookies(log_in(client, key))["kbsearch_admin"][0]
    assert "Max-Age=420" in cookie
    with sqlite3.connect(Components.of(app).settings.channels_db) as conn:
        created, expires = conn.execute("SELECT created, expires FROM admin_sessions").fetchone()
    assert before <= created and expires - created == 420


# CSRF


@pytest.mark.parametrize(("token", "status"), [(None, 400), ("forged-token", 403),
                                               ("ünïcode", 403)])
def test_a_form_without_the_right_token_is_refused_and_changes_nothing(client, app, keys,
                                                                       token, status):
    stored = Components.of(app).callbacks.add(CallbackRequest(
        "Erika Muster", "+49 30 1234567", "morning", "Abschlag zu hoch"))
    log_in(client, keys["Redaktion Nord"])
    csrf_of(client)
    data = {"status": "done", **({"csrf_token": token} if token else {})}
    response = client.post(f"/admin/callbacks/{stored.reference}", data=data)
    assert response.status_code == status
    assert "The form could not be accepted" in response.text and "Traceback" not in response.text
    assert Components.of(app).callbacks.recent()[0].status == "open"


def test_the_token_of_another_login_is_refused(app, keys):
    first, second = app.test_client(), app.test_client()
    log_in(first, keys["Redaktion Nord"])
    log_in(second, keys["Redaktion Ost"])
    response = first.post("/admin/weights/rollback", data={"csrf_token": csrf_of(second)})
    assert response.status_code == 403


# The sections


def test_the_dashboard_has_every_section_and_strict_headers(client, app, keys):
    log_in(client, keys["Redaktion Nord"])
    page = client.get("/admin")
    for section in ("report", "gaps", "checks", "callbacks", "weights", "reindex"):
        assert f'id="{section}"' in page.text
    assert "Not available" not in page.text and page.text.count("<svg") == 5
    # the sample knowledge base has articles past their review date (as kbsearch check says)
    assert "Past their review date" in page.text and "(smart-meter-einbau)" in page.text
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert page.headers["Cache-Control"] == "no-store"
    assert "<script>" not in page.text and " style=" not in page.text
    for static in ("/admin/static/admin.css", "/admin/static/admin.js"):
        with client.get(static) as response:
            assert response.status_code == 200


def log_traffic(client: Any) -> int:
    """Search on the API from nine addresses; three of them find "Balkonkraftwerk" unhelpful."""
    queries = ["Zählerstand melden", "Router blinkt rot", "Balkonkraftwerk anmelden"]
    for n in range(9):
        env = {"REMOTE_ADDR": f"10.0.0.{n}"}
        found = client.get("/api/v1/search", query_string={"q": queries[n % 3], "k": 3},
                           environ_base=env).get_json()
        event = "not_helpful" if n % 3 == 2 else "click"
        assert client.post("/api/v1/feedback", environ_base=env, json={
            "search_id": found["search_id"], "feedback_token": found["feedback_token"],
            "article_id": found["results"][0]["id"],
            "event": event}).status_code == 201
    return 9


def test_the_report_and_gaps_are_those_of_the_logged_searches(client, app, keys):
    searched = log_traffic(client)
    log_in(client, keys["Redaktion Nord"])
    page = client.get("/admin", query_string={"days": "30"}).text
    assert f"<dt>Searches</dt><dd>{searched}</dd>" in page
    assert "<dt>Click-through rate</dt><dd>67%</dd>" in page  # 6 of 9 searches clicked
    assert '<option value="30" selected>' in page
    report = page[page.index('id="report"'):page.index('id="gaps"')]
    assert report.count("<svg") == 5 and "Searches per day" in report
    gaps = page[page.index('id="gaps"'):page.index('id="checks"')]
    assert "Balkonkraftwerk anmelden" in gaps and "Zählerstand" not in gaps
    # an unknown period falls back to a week
    assert '<option value="7" selected>' in client.get("/admin?days=1000").text


def test_callback_requests_are_listed_and_closed(client, app, keys):
    callbacks = Components.of(app).callbacks
    stored = callbacks.add(CallbackRequest(
        "<script>alert(1)</script>", "+49 30 1234567", "morning", "Abschlag zu hoch",
        context="search: Abschlag"))
    log_in(client, keys["Redaktion Nord"])
    page = client.get("/admin")
    assert stored.reference in page.text and "Abschlag zu hoch" in page.text
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;alert(1)" in page.text
    response = client.post(f"/admin/callbacks/{stored.reference}",
                           data={"status": "done", "csrf_token": csrf_of(client)})
    assert response.status_code == 303
    assert response.headers["Location"] == (
        f"/admin?notice=callback_done&ref={stored.reference}&callbacks=open#callbacks")
    assert callbacks.recent()[0].status == "done"
    after = client.get(response.headers["Location"])
    assert f"{stored.reference} is marked as called back." in after.text
    assert "No open callback requests." in after.text
    assert stored.reference in client.get("/admin?callbacks=done").text
    reopened = client.post(f"/admin/callbacks/{stored.reference}",
                           data={"status": "open", "csrf_token": csrf_of(client)})
    assert "notice=callback_open" in reopened.headers["Location"]
    assert callbacks.recent()[0].status == "open"
    unknown = client.post("/admin/callbacks/RR-AAAAAA",
                          data={"status": "done", "csrf_token": csrf_of(client)})
    assert "There is no callback request RR-AAAAAA." in client.get(
        unknown.headers["Location"]).text


def test_weights_versions_are_promoted_and_rolled_back(client, app, keys):
    service = Components.of(app).service
    version = service.weights.save(default_ranker(), "default", {
        "held_out_dcg": {"current": 0.4812, "new": 0.5034},
        "judged_ndcg@10": {"current": 0.9101, "new": 0.9000}})
    log_in(client, keys["Redaktion Nord"])
    page = client.get("/admin").text
    assert version in page and "0.4812 → 0.5034" in page and "0.9101 → 0.9000" in page
    assert 'class="gate pass"' in page and 'class="gate fail"' in page
    promoted = client.post("/admin/weights/promote",
                           data={"version": version, "csrf_token": csrf_of(client)})
    assert promoted.headers["Location"] == (
        f"/admin?notice=promoted&version={version}#weights")
    assert service.weights.current_version() == version
    assert service.ranker(refresh=True).version == version
    document = service.weights.document(version)
    assert document["status"] == "promoted" and "dashboard" in document["reason"]
    rolled = client.post("/admin/weights/rollback", data={"csrf_token": csrf_of(client)})
    assert "notice=rolled_back&version=default" in rolled.headers["Location"]
    assert service.weights.current_version() == "default"
    nothing = client.post("/admin/weights/rollback", data={"csrf_token": csrf_of(client)})
    assert "Nothing to roll back to" in client.get(nothing.headers["Location"]).text
    unknown = client.post("/admin/weights/promote",
                          data={"version": "../etc", "csrf_token": csrf_of(client)})
    assert "There is no weights version ?." in client.get(unknown.headers["Location"]).text
    assert service.weights.current_version() == "default"


# Reindexing


def test_a_reindex_runs_in_the_background_and_is_published(client, app, keys):
    headers = editor_headers(keys)
    before = client.get("/healthz").get_json()
    response = client.post(REINDEX, headers=headers)
    assert response.status_code == 202 and response.headers["Location"] == REINDEX
    job = response.get_json()
    assert job["state"] == "queued" and job["requested_by"].startswith("key ")
    done = finished(client, headers)
    assert done["id"] == job["id"] and done["state"] == "succeeded", done
    assert done["progress"] == {"done": 5, "total": 5} and done["error"] is None
    result = done["result"]
    assert result["articles"] == 5 and result["invalid"] == []
    index_dir = Components.of(app).settings.index
    assert current_version(index_dir) == result["version"] != before["index_version"]
    assert len(result["removed"]) == before["articles"] - 5
    wait_for(lambda: client.get("/healthz").get_json()["articles"] == 5,
             "the service to follow the new build")
    state = json.loads((index_dir / STATE_FILE).read_text("utf-8"))
    assert state["state"] == "succeeded"  # every worker reads the same file


def test_searches_are_answered_during_a_reindex(tmp_path, sample_index, kb, gate):
    app = make_app(tmp_path, sample_index, kb, gate)
    headers = editor_headers({"Redaktion Nord": Components.of(app).keys.create(
        "editor", "Redaktion Nord")[1]})
    client = app.test_client()
    changed = kb / "energie/zaehlerstand-melden.md"
    changed.write_text(changed.read_text("utf-8") + "\nNeu: Ablesung per Foto.\n", "utf-8")
    old = client.get("/api/v1/search", query_string={"q": "Zählerstand melden"}).get_json()
    assert client.post(REINDEX, headers=headers).status_code == 202
    assert gate.entered.wait(WAIT_SECONDS)
    running = client.get(REINDEX, headers=headers).get_json()
    assert running["state"] == "running" and running["progress"] == {"done": 4, "total": 5}
    during = client.get("/api/v1/search", query_string={"q": "Zählerstand melden"})
    assert during.status_code == 200
    assert during.get_json()["index_version"] == old["index_version"]
    assert during.get_json()["results"][0]["id"] == "zaehlerstand-melden"
    gate.release.set()
    done = finished(client, headers)
    assert done["state"] == "succeeded" and done["result"]["changed"] == [
        "zaehlerstand-melden"]

    def searched_new_build() -> bool:
        answer = client.get("/api/v1/search", query_string={"q": "Zählerstand melden"})
        return answer.get_json()["index_version"] == done["result"]["version"]
    wait_for(searched_new_build, "searches to use the new build")


def test_a_second_reindex_while_one_runs_gets_409(tmp_path, sample_index, kb, gate):
    app = make_app(tmp_path, sample_index, kb, gate)
    key = Components.of(app).keys.create("editor", "Redaktion Nord")[1]
    headers = {"X-API-Key": key}
    client = app.test_client()
    (kb / "neu.md").write_text(
        "---\nid: neu\ntitle: Neu\nlanguage: de\ncategory: zaehler\n---\nGanz neuer Text.\n",
        "utf-8")
    first = client.post(REINDEX, headers=headers).get_json()
    assert gate.entered.wait(WAIT_SECONDS)
    second = client.post(REINDEX, headers=headers, json={"strict": True})
    assert second.status_code == 409
    body = second.get_json()
    assert body["error"]["code"] == "reindex_running" and body["job"]["id"] == first["id"]
    log_in(client, key)
    form = client.post("/admin/reindex", data={"csrf_token": csrf_of(client)})
    assert "notice=reindex_running" in form.headers["Location"]
    page = client.get(form.headers["Location"]).text
    assert "A reindex is already running" in page and 'id="reindex-button" disabled' in page
    assert "is running: 5 of 6 articles embedded." in page  # 5 reused, the new one waits
    gate.release.set()
    assert finished(client, headers)["state"] == "succeeded"
    third = client.post(REINDEX, headers=headers)
    assert third.status_code == 202 and finished(client, headers)["id"] == third.get_json()["id"]


def test_a_failed_build_is_reported_and_leaves_the_index(client, app, keys, kb):
    headers = editor_headers(keys)
    broken = kb / "energie/kaputt.md"
    broken.write_text("---\nid: kaputt\ntitle: Kaputt\nlanguage: fr\ncategory: x\n---\nText\n",
                      "utf-8")
    index_dir = Components.of(app).settings.index
    before = current_version(index_dir)
    assert client.post(REINDEX, headers=headers, json={"strict": True}).status_code == 202
    done = finished(client, headers)
    assert done["state"] == "failed" and done["result"] is None
    assert "energie/kaputt.md:4: field 'language'" in done["error"]
    assert "Traceback" not in done["error"]
    assert current_version(index_dir) == before


def test_invalid_articles_are_skipped_and_listed(client, app, keys, kb):
    headers = editor_headers(keys)
    (kb / "energie/kaputt.md").write_text(
        "---\nid: kaputt\ntitle: Kaputt\nlanguage: fr\ncategory: x\n---\nText\n", "utf-8")
    client.post(REINDEX, headers=headers)
    done = finished(client, headers)
    assert done["state"] == "succeeded" and done["result"]["articles"] == 5
    [invalid] = done["result"]["invalid"]
    assert (invalid["file"], invalid["line"], invalid["field"]) == (
        "energie/kaputt.md", 4, "language")
    log_in(client, keys["Redaktion Nord"])
    assert "energie/kaputt.md:4: field &#39;language&#39;" in client.get("/admin").text


def test_a_reindex_without_any_valid_article_fails(client, app, keys, kb):
    shutil.rmtree(kb)
    kb.mkdir()
    headers = editor_headers(keys)
    client.post(REINDEX, headers=headers)
    done = finished(client, headers)
    assert done["state"] == "failed" and "no valid article" in done["error"]


def test_a_job_whose_process_died_blocks_nothing(client, app, keys):
    headers = editor_headers(keys)
    index_dir = Components.of(app).settings.index
    stale = ReindexJob("20260101T000000Z-abcdef", "running", "key x", False, now_iso(),
                       started=now_iso(), done=3, total=64)
    (index_dir / STATE_FILE).write_text(json.dumps(stale.to_json()), "utf-8")
    reported = client.get(REINDEX, headers=headers).get_json()
    assert reported["state"] == "failed" and reported["error"] == DIED
    assert reported["id"] == stale.id and reported["finished"]
    assert client.post(REINDEX, headers=headers).status_code == 202
    assert finished(client, headers)["state"] == "succeeded"


def hold_a_reindex(index_dir: str, articles_dir: str, ready: Any) -> None:
    """Run a reindex in this process that stays in its embedding until the process is killed."""
    embedder = GatedEmbedder()
    board = ReindexBoard(Path(index_dir))
    board.start(ReindexPlan(Path(articles_dir), Path(index_dir)), "key other-worker", False,
                lambda: embedder)
    embedder.entered.wait(WAIT_SECONDS)
    ready.set()
    time.sleep(WAIT_SECONDS)


@pytest.mark.slow  # a second Python process: about 4 s
def test_a_reindex_in_another_process_blocks_until_that_process_dies(
        tmp_path, sample_index, kb, fake_embedder):
    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    changed = kb / "energie/abschlag-anpassen.md"
    changed.write_text(changed.read_text("utf-8") + "\nNeu: Abschlag per App.\n", "utf-8")
    spawn = multiprocessing.get_context("spawn")  # a worker of its own, as under gunicorn
    ready = spawn.Event()
    worker = spawn.Process(target=hold_a_reindex, args=(str(index), str(kb), ready))
    worker.start()
    try:
        assert ready.wait(WAIT_SECONDS), "the other process did not start its reindex"
        board = ReindexBoard(index)
        running = board.latest()
        assert running is not None and running.state == "running"
        assert running.requested_by == "key other-worker" and running.total == 5
        with pytest.raises(ReindexRunningError) as refused:
            board.start(ReindexPlan(kb, index), "key here", False, lambda: fake_embedder)
        assert refused.value.job.id == running.id
        before = current_version(index)
        os.kill(worker.pid, signal.SIGKILL)  # the worker dies in the middle of the build
        worker.join(WAIT_SECONDS)
        died = board.latest()
        assert died is not None and died.id == running.id
        assert died.state == "failed" and died.error == DIED
        assert current_version(index) == before
        again = board.start(ReindexPlan(kb, index), "key here", False, lambda: fake_embedder)
        done = wait_for(lambda: (job := board.latest()) and not job.active and job,
                        "the next reindex to finish")
        assert done.id == again.id and done.state == "succeeded"
        assert done.result.changed == ("abschlag-anpassen",)
    finally:
        if worker.is_alive():
            worker.kill()
        worker.join(WAIT_SECONDS)


def test_the_dashboard_starts_a_reindex_with_its_login_and_token(client, app, keys):
    log_in(client, keys["Redaktion Nord"])
    token = csrf_of(client)
    missing = client.post(REINDEX)
    assert missing.status_code == 400 and missing.get_json()["error"]["code"] == "csrf_missing"
    wrong = client.post(REINDEX, headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403 and wrong.get_json()["error"]["code"] == "csrf_invalid"
    assert Components.of(app).reindex.latest() is None
    started = client.post(REINDEX, headers={"X-CSRF-Token": token}, json={"strict": False})
    assert started.status_code == 202
    assert started.get_json()["requested_by"].startswith("dashboard login of key ")
    assert finished(client, {})["state"] == "succeeded"  # polled with the session cookie
    form = client.post("/admin/reindex", data={"csrf_token": token, "strict": "1"})
    assert form.headers["Location"] == "/admin?notice=reindex_started#reindex"
    finished(client, {})
    page = client.get("/admin").text
    assert "finished at" in page and "build " in page


@pytest.mark.parametrize(("who", "method", "status", "code"), [
    (None, "post", 401, "invalid_api_key"),
    (None, "get", 401, "invalid_api_key"),
    ("Team Süd", "post", 403, "forbidden"),
    ("Team Süd", "get", 403, "forbidden"),
    ("kbs_00000000_unknown", "post", 401, "invalid_api_key"),
])
def test_reindexing_is_for_editors_only(client, app, keys, who, method, status, code):
    headers = {"X-API-Key": keys.get(who, who)} if who else {}
    response = client.open(REINDEX, method=method.upper(), headers=headers)
    assert response.status_code == status and response.get_json()["error"]["code"] == code
    assert Components.of(app).reindex.latest() is None


def test_the_reindex_answers_are_documented(client, app, keys):
    document = client.get("/api/v1/openapi.json").get_json()
    headers = editor_headers(keys)
    check_documented(document, REINDEX, "get", client.get(REINDEX, headers=headers))  # 404
    bad = client.post(REINDEX, headers=headers, json={"strict": "yes"})
    assert bad.get_json()["error"]["message"].startswith("strict:")
    check_documented(document, REINDEX, "post", bad)
    unknown = client.post(REINDEX, headers=headers, json={"force": True})
    assert unknown.get_json()["error"]["code"] == "unknown_parameter"
    started = client.post(REINDEX, headers=headers)
    check_documented(document, REINDEX, "post", started)
    check_documented(document, REINDEX, "post", client.post(REINDEX, headers=headers))
    check_documented(document, REINDEX, "get", client.get(REINDEX, headers=headers))
    check_documented(document, REINDEX, "get", client.get(REINDEX, headers=headers))
    finished(client, headers)
    check_documented(document, REINDEX, "get", client.get(REINDEX, headers=headers))


def test_progress_counts_articles_embedded_or_reused(tmp_path, sample_index, kb, fake_embedder):
    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    changed = kb / "telekom/router-stoerung.md"
    changed.write_text(changed.read_text("utf-8") + "\nNeu: Router neu starten.\n", "utf-8")
    totals: list[int] = []
    done: list[int] = []
    plan = ReindexPlan(kb, index, batch_size=1)
    result = build(plan, False, lambda: fake_embedder, totals.append, done.append)
    assert totals == [5] and result.articles == 5 and result.changed == ("router-stoerung",)
    assert done[0] == 4 and done[-1] == 5 and done == sorted(done)  # 4 reused, then 1
    assert 0 < result.embedded < result.chunks


def test_a_job_is_read_back_as_it_was_written(tmp_path, sample_index, kb, fake_embedder):
    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    (kb / "kaputt.md").write_text("---\nid: kaputt\n---\n", "utf-8")
    result = build(ReindexPlan(kb, index), False, lambda: fake_embedder, lambda n: None,
                   lambda n: None)
    job = ReindexJob("j-1", "succeeded", "key k", False, now_iso(), now_iso(), now_iso(),
                     now_iso(), 5, 5, result)
    assert ReindexJob.from_json(json.loads(json.dumps(job.to_json()))) == job
    board = ReindexBoard(tmp_path / "elsewhere")
    assert board.latest() is None
    board.state_path.parent.mkdir()
    board.state_path.write_text("{not json", "utf-8")
    assert board.latest() is None  # unreadable: as if none had run, and logged
