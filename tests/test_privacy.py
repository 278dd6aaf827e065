"""Personal data typed into any channel stays out of every database file and every log line.

A real gunicorn server (the settings ``kbsearch serve`` and the Docker image use) runs the
app over the sample index with the fake embedder, with kbsearch's own loggers at DEBUG.
A customer's e-mail address, phone number and IBAN go in through a search, a feedback, a
bot turn, an assist call, the FAQ page and a callback request, and through a request that
fails; afterwards neither the server's log nor any file under its data folder holds them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .conftest import ARTICLES, ROOT
from .test_cli import free_port

EMAIL, PHONE, IBAN = "erika.muster@example.de", "0171 2345678", "DE89 3704 0044 0532 0130 00"
SECRETS = (EMAIL, "erika.muster", "2345678", "171 234", IBAN, IBAN.replace(" ", ""),
           "3704 0044", urllib.parse.quote(EMAIL), urllib.parse.quote_plus(IBAN))
PERSONAL = f"Lastschrift von {IBAN} geht nicht, mail {EMAIL} oder Tel. {PHONE}"

SERVER = """
import json, logging, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from tests.fakes import FakeEmbedder
from kbsearch.api import create_app
from kbsearch.config import PATH_SETTINGS, load_settings
from kbsearch.http.server import run_gunicorn
from kbsearch.service import SearchService

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
logging.getLogger("kbsearch").setLevel(logging.DEBUG)
values = json.loads(sys.argv[1])
settings = load_settings(environ={}, **{name: Path(value) if name in PATH_SETTINGS else value
                                        for name, value in values.items()})
app = create_app(search_service=SearchService(settings, embedder=FakeEmbedder()))
run_gunicorn(app, "127.0.0.1", int(sys.argv[2]), 1, 2)
"""


def _request(url: str, data: dict | None = None, form: dict | None = None,
             key: str | None = None) -> tuple[int, bytes]:
    """Send one request; return its status and body, whatever the status."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = None
    if data is not None:
        body, headers["Content-Type"] = json.dumps(data).encode(), "application/json"
    elif form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003 - urllib's signature
        return None


def _wait_until_up(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=5).close()
            return
        except OSError:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)


def _every_channel(base: str, bot: str, agent: str) -> None:
    """Send the personal text through every channel, as customers, bots and agents would."""
    q = urllib.parse.quote_plus(PERSONAL)
    status, body = _request(f"{base}/api/v1/search?q={q}&k=3")
    assert status == 200
    found = json.loads(body)
    assert "[iban]" in found["query"]
    assert _request(f"{base}/api/v1/feedback", data={
        "search_id": found["search_id"], "feedback_token": found["feedback_token"],
        "article_id": found["results"][0]["id"],
        "event": "helpful"})[0] == 201
    assert _request(f"{base}/api/v1/search?q={q}&k=lots")[0] == 400  # a failing request
    assert _request(f"{base}/api/v1/bot/turn", key=bot,
                    data={"conversation_id": "c-1", "message": PERSONAL})[0] == 200
    assert _request(f"{base}/api/v1/assist", key=agent,
                    data={"text": f"Hallo,\n{PERSONAL}\nViele Grüße\nErika Muster"})[0] == 200
    assert _request(f"{base}/?q={q}")[0] == 200  # the customer's own page shows what they typed
    assert _request(f"{base}/suche/fragment?q={q}")[0] == 200
    article = found["results"][0]["id"]
    assert _request(f"{base}/articles/{article}?s={found['search_id']}&p=1")[0] == 200
    opener = urllib.request.build_opener(_NoRedirect)
    form = urllib.parse.urlencode({
        "name": "Erika Muster", "phone": "030 9999999", "preferred_time": "asap",
        "description": PERSONAL, "context": f"search: {PERSONAL}"}).encode()
    try:
        opener.open(urllib.request.Request(f"{base}/rueckruf", data=form), timeout=30)
        raise AssertionError("the callback form should answer with a redirect")
    except urllib.error.HTTPError as error:
        assert error.code == 303


def test_no_log_line_and_no_database_file_keeps_personal_data(tmp_path):
    from kbsearch.stores.keys import KeyStore

    data = tmp_path / "data"
    data.mkdir()
    index = tmp_path / "index"
    values = {"articles": str(ARTICLES), "index": str(index),
              "feedback_db": str(data / "feedback.sqlite3"), "weights_dir": str(data / "w"),
              "keys_file": str(data / "keys.json"), "channels_db": str(data / "ch.sqlite3"),
              "rate_limit": "", "rate_limit_keyed": "", "rate_limit_callbacks": ""}
    from kbsearch.index.builds import build_index

    from .fakes import FakeEmbedder

    build_index(ARTICLES, index, FakeEmbedder())
    keys = KeyStore(data / "keys.json")
    bot, agent = (keys.create(role, f"test {role}")[1] for role in ("bot", "agent"))
    port, log = free_port(), tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER, json.dumps(values), str(port), str(ROOT)],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_until_up(base, process, log)
            _every_channel(base, bot, agent)
        finally:
            process.terminate()
            process.wait(timeout=30)
    logged = log.read_text("utf-8")
    assert "GET /api/v1/search HTTP/1.1\" 200" in logged  # the log was written
    assert "POST /rueckruf HTTP/1.1\" 303" in logged
    files = [p for p in data.rglob("*") if p.is_file()]
    assert {"feedback.sqlite3", "ch.sqlite3"} <= {p.name for p in files}
    for secret in SECRETS:
        assert secret not in logged, secret
        for path in files:
            assert secret.encode() not in path.read_bytes(), (path.name, secret)
