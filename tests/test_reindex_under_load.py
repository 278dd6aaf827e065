"""Reindex under load: searches at a steady rate through two full reindexes and their swaps.

A real gunicorn server with two workers (tests/servers.py, the fake embedder) serves a copy
of the sample knowledge base. Clients search it at a steady rate, each over a kept-alive
connection of its own, so that every answer on one connection comes from the one worker
holding it (which one is read from /proc), and the connections cover both workers. Two
reindexes run meanwhile as a contact center runs them: the dashboard's API
(``POST /api/v1/admin/reindex`` with an editor key, built in a thread of a worker) after
an article with a word of its own was added, then ``kbsearch index`` in a process of its own
after a second one. No search may fail; every answer must hold exactly the articles of the
index version it names; and once a connection (so a worker) answers from a newer version it
never answers from an older one again.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest

from kbsearch.index.builds import CURRENT, build_index, current_version
from kbsearch.stores.keys import KeyStore

from .conftest import ARTICLES
from .fakes import FakeEmbedder
from .servers import (
    Answer,
    Server,
    SteadySearches,
    connection_owners,
    fake_server,
    request,
    server_settings,
    start_build,
)

WORKERS = 2
CONNECTIONS = 4  # at least; more are opened until every worker holds one
MAX_CONNECTIONS = 12
SEARCHES_PER_SECOND = 4  # per connection
SETTLE_SECONDS = 1.5  # searching before and after each swap
WAIT_SECONDS = 180
QUERY = "Zählerstand melden Wombatstrom Quokkagas"
ADDED = {"wombat": "Wombatstrom", "quokka": "Quokkagas"}  # article id -> its own word


def _add_article(articles: Path, article_id: str) -> None:
    """Write an article whose title and text name its own word."""
    word = ADDED[article_id]
    (articles / f"{article_id}.md").write_text(
        f"---\nid: {article_id}\ntitle: Zählerstand melden für {word}\nlanguage: de\n"
        f"category: zaehler\n---\n# Zählerstand melden für {word}\n\n"
        f"Kunden mit {word} melden ihren Zählerstand monatlich im Portal.\n", "utf-8")


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition()`` holds, failing after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _searchers_on_every_worker(server: Server, path: str) -> list[SteadySearches]:
    """Start searchers, one connection each, until there are enough and every worker holds
    one of their connections."""
    searchers: list[SteadySearches] = []
    while True:
        searcher = SteadySearches(server.base, path, SEARCHES_PER_SECOND)
        searcher.start()
        searchers.append(searcher)
        _wait_for(lambda started=searcher: bool(started.answers), "a first answer")
        held = set(connection_owners(server).values())
        if len(searchers) >= CONNECTIONS and held == set(server.workers()):
            return searchers
        assert len(searchers) < MAX_CONNECTIONS, f"connections held only by {held}"


def _reindex_through_the_api(server: Server, editor: str) -> str:
    """Start a reindex as the dashboard does, wait for it; return the version it published."""
    status, body = request(f"{server.base}/api/v1/admin/reindex", data={}, key=editor)
    assert status == 202, body
    job: dict = {}

    def finished() -> bool:
        nonlocal job
        status, body = request(f"{server.base}/api/v1/admin/reindex", key=editor)
        assert status == 200, body
        job = json.loads(body)
        return job["state"] not in ("queued", "running")

    _wait_for(finished, "the reindex")
    assert job["state"] == "succeeded", job
    return job["result"]["version"]


def _reindex_on_the_command_line(articles: Path, index: Path) -> str:
    """Run ``kbsearch index``; return the version it published."""
    build = start_build(articles, index)
    _, errors = build.communicate(timeout=WAIT_SECONDS)
    assert build.returncode == 0, errors.decode()
    version = current_version(index)
    assert version is not None
    return version


def _all_answered_from(searchers: list[SteadySearches], version: str) -> None:
    """Wait until every searcher has had an answer from ``version``, then a little more."""
    _wait_for(lambda: all(any(a.version == version for a in s.answers) for s in searchers),
              f"every connection to answer from {version}")
    time.sleep(SETTLE_SECONDS)


@pytest.mark.slow  # a server with two workers, two reindexes of the sample under searches
def test_searches_through_two_reindexes_never_fail_and_switch_cleanly(tmp_path):
    articles, index, data = tmp_path / "articles", tmp_path / "index", tmp_path / "data"
    shutil.copytree(ARTICLES, articles)
    data.mkdir()
    first = build_index(articles, index, FakeEmbedder()).version
    editor = KeyStore(data / "keys.json").create("editor", "test editor")[1]
    path = f"/api/v1/search?q={urllib.parse.quote_plus(QUERY)}&k=10"
    with fake_server(tmp_path, server_settings(data, index, articles), workers=WORKERS) as server:
        searchers = _searchers_on_every_worker(server, path)
        try:
            time.sleep(SETTLE_SECONDS)
            _add_article(articles, "wombat")
            second = _reindex_through_the_api(server, editor)
            published = {second: (index / CURRENT).stat().st_mtime}
            _all_answered_from(searchers, second)
            _add_article(articles, "quokka")
            third = _reindex_on_the_command_line(articles, index)
            published[third] = (index / CURRENT).stat().st_mtime
            _all_answered_from(searchers, third)
            owners = connection_owners(server)  # while the connections are open
            workers = server.workers()
        finally:
            answers = [a for s in searchers for a in s.stop()]
    failed = [a for a in answers if not a.ok]
    assert answers and not failed, failed[:5]
    order = [first, second, third]
    holds = {first: set(), second: {"wombat"}, third: {"wombat", "quokka"}}
    for answer in answers:  # each version answers with exactly its own articles
        assert answer.version in order, answer
        assert set(ADDED) & set(answer.ids) == holds[answer.version], answer
    by_connection: dict[int, list[int]] = {}
    for searcher in searchers:
        for answer in searcher.answers:
            by_connection.setdefault(answer.port, []).append(order.index(answer.version))
    assert set(by_connection) <= set(owners)  # each connection kept alive throughout
    for port, seen in by_connection.items():  # never back to an older version
        assert seen == sorted(seen), (port, owners[port], seen)
        assert seen[0] == 0 and seen[-1] == 2, (port, seen)
    assert {owners[port] for port in by_connection} == set(workers)
    _report(answers, order, published, len(by_connection))


def _report(answers: list[Answer], order: list[str], published: dict[str, float],
            connections: int) -> None:
    """Print the figures: searches, failures, and how long each swap took.

    A swap takes from the moment CURRENT was replaced (its modification time) to the last
    answer from the version before; meanwhile both versions may answer.
    """
    lines = []
    for old, new in itertools.pairwise(order):
        last_old = max(a.received for a in answers if a.version == old)
        first_new = min(a.received for a in answers if a.version == new)
        lines.append(f"swap {order.index(new)}: {last_old - published[new]:.2f} s from CURRENT "
                     f"replaced to the last old answer, first new answer after "
                     f"{first_new - published[new]:.2f} s")
    print(f"\nreindex under load: {len(answers)} searches over {connections} connections on "
          f"{WORKERS} workers, {sum(not a.ok for a in answers)} failed; " + "; ".join(lines))
