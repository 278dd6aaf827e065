"""Personal data typed into any channel stays out of every database file and every log line.

A real gunicorn server (the settings ``kbsearch serve`` and the Docker image use) runs the
app over the sample index with the fake embedder, with kbsearch's own loggers at DEBUG.
A customer's e-mail address, phone number and IBAN go in through a search, a feedback, a
bot turn, an assist call, the FAQ page and a callback request, and through a request that
fails; afterwards neither the server's log nor any file under its data folder holds them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from .conftest import ARTICLES
from .gunicorn_server import running_server, server_settings

EMAIL, PHONE, IBAN = "erika.muster@example.de", "0171 2345678", "DE89 3704 0044 0532 0130 00"
SECRETS = (EMAIL, "erika.muster", "2345678", "171 234", IBAN, IBAN.replace(" ", ""),
           "3704 0044", urllib.parse.quote(EMAIL), urllib.parse.quote_plus(IBAN))
PERSONAL = f"Lastschrift von {IBAN} geht nicht, mail {EMAIL} oder Tel. {PHONE}"


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


def _every_channel(base: str, bot: str, agent: str) -> None:
    """Send the personal text through every channel, as customers, bots and agents would."""
    q = urllib.parse.quote_plus(PERSONAL)
    status, body = _request(f"{base}/api/v1/search?q={q}&k=3")
    assert status == 200
    found = json.loads(body)
    assert "[iban]" in found["query"]
    assert _request(f"{base}/api/v1/feedback", data={
        "search_id": found["search_id"], "article_id": found["results"][0]["id"],
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
    from kbsearch.index.builds import build_index

    from .fakes import FakeEmbedder

    build_index(ARTICLES, index, FakeEmbedder())
    keys = KeyStore(data / "keys.json")
    bot, agent = (keys.create(role, f"test {role}")[1] for role in ("bot", "agent"))
    with running_server(tmp_path, server_settings(data, index)) as (base, _):
        _every_channel(base, bot, agent)
    log = tmp_path / "server.log"
    logged = log.read_text("utf-8")
    assert "GET /api/v1/search HTTP/1.1\" 200" in logged  # the log was written
    assert "POST /rueckruf HTTP/1.1\" 303" in logged
    files = [p for p in data.rglob("*") if p.is_file()]
    assert {"feedback.sqlite3", "ch.sqlite3"} <= {p.name for p in files}
    for secret in SECRETS:
        assert secret not in logged, secret
        for path in files:
            assert secret.encode() not in path.read_bytes(), (path.name, secret)
