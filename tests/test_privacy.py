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
from .servers import fake_server, request, server_settings

EMAIL, PHONE, IBAN = "erika.muster@example.de", "0171 2345678", "DE89 3704 0044 0532 0130 00"
SECRETS = (EMAIL, "erika.muster", "2345678", "171 234", IBAN, IBAN.replace(" ", ""),
           "3704 0044", urllib.parse.quote(EMAIL), urllib.parse.quote_plus(IBAN))
PERSONAL = f"Lastschrift von {IBAN} geht nicht, mail {EMAIL} oder Tel. {PHONE}"

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003 - urllib's signature
        return None


def _every_channel(base: str, bot: str, agent: str) -> None:
    """Send the personal text through every channel, as customers, bots and agents would."""
    q = urllib.parse.quote_plus(PERSONAL)
    status, body = request(f"{base}/api/v1/search?q={q}&k=3")
    assert status == 200
    found = json.loads(body)
    assert "[iban]" in found["query"]
    assert request(f"{base}/api/v1/feedback", data={
        "search_id": found["search_id"], "feedback_token": found["feedback_token"],
        "article_id": found["results"][0]["id"],
        "event": "helpful"})[0] == 201
    assert request(f"{base}/api/v1/search?q={q}&k=lots")[0] == 400  # a failing request
    assert request(f"{base}/api/v1/bot/turn", key=bot,
                   data={"conversation_id": "c-1", "message": PERSONAL})[0] == 200
    assert request(f"{base}/api/v1/assist", key=agent,
                   data={"text": f"Hallo,\n{PERSONAL}\nViele Grüße\nErika Muster"})[0] == 200
    assert request(f"{base}/?q={q}")[0] == 200  # the customer's own page shows what they typed
    assert request(f"{base}/suche/fragment?q={q}")[0] == 200
    article = found["results"][0]["id"]
    assert request(f"{base}/articles/{article}?s={found['search_id']}&p=1"
                   f"&t={found['feedback_token']}")[0] == 200
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
    with fake_server(tmp_path, server_settings(data, index, ARTICLES)) as server:
        _every_channel(server.base, bot, agent)
    logged = server.log.read_text("utf-8")
    assert "GET /api/v1/search HTTP/1.1\" 200" in logged  # the log was written
    assert "POST /rueckruf HTTP/1.1\" 303" in logged
    files = [p for p in data.rglob("*") if p.is_file()]
    assert {"feedback.sqlite3", "ch.sqlite3"} <= {p.name for p in files}
    for secret in SECRETS:
        assert secret not in logged, secret
        for path in files:
            assert secret.encode() not in path.read_bytes(), (path.name, secret)
