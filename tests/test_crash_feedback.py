"""Feedback from four clients at once survives a killed worker and a killed server.

``kbsearch serve --workers 2`` (the real command line with the real model) serves the sample
index. Four client processes, each with its own API key (two agents, two bots), search and
send 500 feedback events each on the results they were shown, with the same key; a send
whose connection fails is sent again. When a quarter of all events are acknowledged, one
gunicorn worker is killed (SIGKILL); at half, the whole server, master and workers, which is
then started again on the same files while the clients go on. The bots' chatbot turns write
to the channels database meanwhile.

Afterwards, in the feedback database opened read-only: every acknowledged event is stored
exactly once and nothing is stored that no client sent; ``PRAGMA integrity_check`` is ok for
the feedback and the channels databases. A send that got no answer and, sent again, gets
409 ``duplicate_feedback`` was stored by the first try: it counts as acknowledged, once.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from contextlib import closing
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import pytest

from .conftest import ARTICLES, MODEL, ROOT
from .servers import free_port, request

pytestmark = [pytest.mark.slow, pytest.mark.model]

CLIENTS = 4
EVENTS_PER_CLIENT = 500
ROLES = ("agent", "bot", "agent", "bot")
EVENT_TYPES = ("impression", "click", "helpful", "not_helpful", "resolved", "escalated")
K = 10  # results per search: each search holds 6 x 10 events, so 9 searches per client
KILL_WORKER_AT = CLIENTS * EVENTS_PER_CLIENT // 4  # acknowledged events, all clients together
KILL_SERVER_AT = CLIENTS * EVENTS_PER_CLIENT // 2
CLIENT_SECONDS = 240  # a client gives up on a send unanswered this long after it began
STARTUP_SECONDS = 180  # loading the model: seconds on idle cores, most of a minute on busy ones
RETRY_PAUSE = 0.05
QUERIES = ("Zählerstand melden", "Router blinkt rot", "Abschlag ändern", "Umzug melden",
           "Passwort vergessen", "Roaming im Ausland", "SEPA Lastschrift", "WLAN langsam",
           "Rechnung erklärt", "Vertrag kündigen", "meter reading", "internet is slow")
# acknowledged: a 201, or a 409 duplicate for a send whose earlier try went unanswered
ACKNOWLEDGED = ("created", "created_after_retry", "duplicate_after_retry")


class Unanswered(Exception):
    """A request got no answer before the client's deadline."""


def _json(body: bytes) -> dict:
    """Return a JSON object body, or the start of a body that is none, as {"raw": ...}."""
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"raw": body[:200].decode("utf-8", "replace")}


def _send(base: str, path: str, key: str, data: dict | None, deadline: float,
          tally: Counter) -> tuple[int, dict, bool]:
    """Send a request until the server answers; return status, body and whether it was resent.

    Connection failures (refused, reset, closed before an answer, timed out) are retried
    every RETRY_PAUSE seconds; raises Unanswered past the deadline.
    """
    resent = False
    while True:
        try:
            status, body = request(f"{base}{path}", data=data, key=key)
            return status, _json(body), resent
        except (OSError, http.client.HTTPException) as exc:
            tally["connection_errors"] += 1
            resent = True
            if time.monotonic() > deadline:
                raise Unanswered(f"{path}: {exc!r}") from exc
            time.sleep(RETRY_PAUSE)


def _outcome(status: int, body: dict, resent: bool) -> str:
    """Name what a feedback send came to (see ACKNOWLEDGED); anything else is a failure."""
    if status == 201:
        return "created_after_retry" if resent else "created"
    if status == 409 and resent and body.get("error", {}).get("code") == "duplicate_feedback":
        return "duplicate_after_retry"
    return f"failed {status} {json.dumps(body)[:200]}"


def _search(number: int, base: str, key: str, role: str, deadline: float,
            tally: Counter) -> dict | None:
    """Search (and, for a bot, take a chatbot turn); return the results, None if refused."""
    query = QUERIES[(number + tally["searches"]) % len(QUERIES)]
    path = f"/api/v1/search?q={urllib.parse.quote_plus(query)}&k={K}"
    status, found, _ = _send(base, path, key, None, deadline, tally)
    tally["searches"] += 1
    if status != 200:
        tally[f"search failed {status}"] += 1
        return None
    if role == "bot":  # rows in the channels database
        turn = {"conversation_id": f"crash-{number}-{tally['searches']}", "message": query}
        status, _, _ = _send(base, "/api/v1/bot/turn", key, turn, deadline, tally)
        tally["bot_turns" if status == 200 else f"bot turn failed {status}"] += 1
    return found


def _feedback_client(number: int, base: str, key: str, role: str, out: str,
                     go: EventType, acknowledged: Synchronized) -> None:
    """Once ``go`` is set, search and send EVENTS_PER_CLIENT events on the results.

    The file ``out`` gets {"tally": counts, "sent": [each event with its outcome]}; an
    event whose sends all went unanswered has the outcome "unanswered".
    """
    go.wait(CLIENT_SECONDS)
    deadline = time.monotonic() + CLIENT_SECONDS
    tally: Counter = Counter()
    sent: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = None
    try:
        while len(sent) < EVENTS_PER_CLIENT:
            found = _search(number, base, key, role, deadline, tally)
            if found is None:
                break
            shown = [result["id"] for result in found["results"]]
            for event in EVENT_TYPES:
                for article in shown[:EVENTS_PER_CLIENT - len(sent)]:
                    pending = {"search_id": found["search_id"], "article_id": article,
                               "event": event}
                    outcome = _outcome(*_send(base, "/api/v1/feedback", key, pending,
                                              deadline, tally))
                    sent.append({**pending, "outcome": outcome})
                    pending = None
                    if outcome in ACKNOWLEDGED:
                        with acknowledged.get_lock():
                            acknowledged.value += 1
    except Unanswered as exc:
        tally[f"gave up: {exc}"] += 1
        if pending is not None:
            sent.append({**pending, "outcome": "unanswered"})
    finally:
        Path(out).write_text(json.dumps({"tally": tally, "sent": sent}), "utf-8")


def _server_env(home: Path, index: Path) -> dict[str, str]:
    """Return the environment of a server with its files under home, without rate limits."""
    return {
        **os.environ, "PYTHONPATH": str(ROOT), "KBSEARCH_HOME": str(home),
        "KBSEARCH_MODEL": str(MODEL), "KBSEARCH_INDEX": str(index),
        "KBSEARCH_ARTICLES": str(ARTICLES),
        "KBSEARCH_FEEDBACK_DB": str(home / "feedback.sqlite3"),
        "KBSEARCH_CHANNELS_DB": str(home / "channels.sqlite3"),
        "KBSEARCH_KEYS_FILE": str(home / "keys.json"),
        "KBSEARCH_WEIGHTS_DIR": str(home / "weights"),
        "KBSEARCH_RATE_LIMIT": "off", "KBSEARCH_RATE_LIMIT_KEYED": "off",
    }


def _serve(port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start ``kbsearch serve --workers 2`` in a process group of its own, logging to log."""
    kbsearch = shutil.which("kbsearch", path=os.path.dirname(sys.executable)) or "kbsearch"
    with log.open("a") as out:
        return subprocess.Popen(
            [kbsearch, "serve", "--workers", "2", "--port", str(port)], env=env, cwd=ROOT,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _kill(server: subprocess.Popen) -> None:
    """Kill a server's whole process group, master and workers, with SIGKILL."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def _children(pid: int) -> set[int]:
    """Return the ids of the live processes whose parent is pid (gunicorn's workers)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # fields after the command name, which is in parentheses: state, parent, ...
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue  # the process ended meanwhile
        if int(parent) == pid and state != "Z":
            found.add(int(stat.parent.name))
    return found


def _wait_until(check: Any, what: str, clients: list, seconds: float = 120) -> None:
    """Wait until check() is true; fail if the clients have all stopped or time runs out."""
    deadline = time.monotonic() + seconds
    while not check():
        assert not clients or any(c.is_alive() for c in clients), f"clients ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.01)


def _stored(path: Path) -> tuple[Counter, list[str], list[tuple]]:
    """Open a feedback database read-only; return its events counted, integrity, key check."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        events = Counter(db.execute("SELECT search_id, article_id, event FROM events"))
        integrity = [row[0] for row in db.execute("PRAGMA integrity_check")]
        foreign = db.execute("PRAGMA foreign_key_check").fetchall()
    return events, integrity, foreign


def _channels(path: Path) -> tuple[list[str], int]:
    """Open a channels database read-only; return its integrity and bot conversations."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        integrity = [row[0] for row in db.execute("PRAGMA integrity_check")]
        conversations = db.execute("SELECT COUNT(*) FROM bot_conversations").fetchone()[0]
    return integrity, conversations


def _up(base: str, server: subprocess.Popen, log: Path) -> bool:
    """Say whether the server answers /healthz; fail, showing its log, if it has ended."""
    assert server.poll() is None, log.read_text("utf-8")
    try:
        urllib.request.urlopen(f"{base}/healthz", timeout=5).close()
        return True
    except OSError:
        return False


def _open_databases(pid: int) -> list[str]:
    """Return the SQLite files a process holds open."""
    held = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            held.append(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile
    return [name for name in held if ".sqlite3" in name]


def _run_through_kills(base: str, port: int, env: dict[str, str], log: Path,
                       clients: list, go: EventType,
                       acknowledged: Synchronized
                       ) -> tuple[dict[str, tuple[int, float]], list[str]]:
    """Start the server and the clients; kill a worker, then the server; restart it.

    Returns, for each step, the events acknowledged and the seconds since the clients
    began; and the databases the gunicorn master, which forks the workers, held open.
    """
    servers = [_serve(port, env, log)]
    try:
        for client in clients:
            client.start()  # they import while the server loads the model
        _wait_until(lambda: _up(base, servers[0], log), "server up", [], STARTUP_SECONDS)
        master = servers[0].pid
        _wait_until(lambda: len(_children(master)) == 2, "two workers", [])
        workers, began = _children(master), time.monotonic()
        go.set()
        steps: dict[str, tuple[int, float]] = {}

        def step(name: str) -> None:
            steps[name] = (acknowledged.value, round(time.monotonic() - began, 1))

        _wait_until(lambda: acknowledged.value >= KILL_WORKER_AT, "events to kill at", clients)
        os.kill(min(workers), signal.SIGKILL)
        step("worker killed")
        _wait_until(lambda: len(_children(master) - workers) == 1, "worker replaced", [])
        step("worker replaced")
        _wait_until(lambda: acknowledged.value >= KILL_SERVER_AT, "events to kill at", clients)
        held = _open_databases(master)
        _kill(servers[0])
        step("server killed")
        servers.append(_serve(port, env, log))
        _wait_until(lambda: _up(base, servers[1], log), "server up again", [], STARTUP_SECONDS)
        step("server back")
        for client in clients:
            client.join(timeout=CLIENT_SECONDS)
        step("clients done")
        return steps, held
    finally:
        for client in (c for c in clients if c.pid is not None):
            if client.is_alive():
                client.kill()
            client.join()
        for server in servers:
            _kill(server)  # the databases are checked as a crash left them


def _summary(sent: list[dict], stored: Counter, tally: Counter,
             steps: dict[str, tuple[int, float]], seconds: float) -> str:
    """Return the run's figures in one line."""
    outcomes = Counter(event["outcome"] for event in sent)
    acknowledged = sum(outcomes[name] for name in ACKNOWLEDGED)
    kills = ", ".join(f"{name} at {count} events and {at} s"
                      for name, (count, at) in steps.items())
    return (
        f"crash feedback: {len(sent)} events sent, {acknowledged} acknowledged "
        f"({outcomes['created_after_retry']} with 201 and {outcomes['duplicate_after_retry']} "
        f"with 409 after a retry), {sum(stored.values())} stored, "
        f"{sum(n - 1 for n in stored.values())} stored twice, {len(sent) - acknowledged} "
        f"failed; {tally['searches']} searches, {tally['bot_turns']} bot turns, "
        f"{tally['connection_errors']} connection errors; {kills}; {seconds:.0f} s"
    )


def test_every_acknowledged_event_is_stored_once_through_worker_and_server_kills(
        model_index, tmp_path):
    from kbsearch.stores.keys import KeyStore

    started = time.monotonic()
    home = tmp_path / "home"
    keys = KeyStore(home / "keys.json")
    secrets = [keys.create(role, f"crash client {n}")[1] for n, role in enumerate(ROLES)]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    spawn = multiprocessing.get_context("spawn")  # no fork of a process that holds torch
    acknowledged, go = spawn.Value("i", 0), spawn.Event()
    outs = [tmp_path / f"client-{n}.json" for n in range(CLIENTS)]
    clients = [spawn.Process(target=_feedback_client, args=(
        n, base, secrets[n], ROLES[n], str(outs[n]), go, acknowledged)) for n in range(CLIENTS)]
    steps, master_held = _run_through_kills(base, port, _server_env(home, model_index),
                               tmp_path / "serve.log", clients, go, acknowledged)

    assert [client.exitcode for client in clients] == [0] * CLIENTS
    reports = [json.loads(out.read_text("utf-8")) for out in outs]
    tally = sum((Counter(report["tally"]) for report in reports), Counter())
    sent = [event for report in reports for event in report["sent"]]
    sent_keys = Counter((e["search_id"], e["article_id"], e["event"]) for e in sent)
    acked = {(e["search_id"], e["article_id"], e["event"]) for e in sent
             if e["outcome"] in ACKNOWLEDGED}
    stored, integrity, foreign = _stored(home / "feedback.sqlite3")
    channels_integrity, conversations = _channels(home / "channels.sqlite3")
    print("\n" + _summary(sent, stored, tally, steps, time.monotonic() - started))

    assert len(sent) == CLIENTS * EVENTS_PER_CLIENT and max(sent_keys.values()) == 1
    assert [e for e in sent if e["outcome"] not in ACKNOWLEDGED] == []
    assert not [name for name in tally if "failed" in name or "gave up" in name], tally
    assert {key: n for key, n in stored.items() if n > 1} == {}
    missing, unsent = acked - set(stored), set(stored) - set(sent_keys)
    assert not missing, f"{len(missing)} acknowledged events not stored: {sorted(missing)[:3]}"
    assert not unsent, f"{len(unsent)} events stored that no client sent: {sorted(unsent)[:3]}"
    assert integrity == ["ok"] and foreign == []
    assert channels_integrity == ["ok"]
    assert conversations == tally["bot_turns"]  # one conversation per acknowledged turn
    # the kills came while the clients were sending, and the server kill interrupted them
    counts = [steps[name][0] for name in ("worker killed", "server killed")]
    assert counts[0] < counts[1] < CLIENTS * EVENTS_PER_CLIENT
    assert tally["connection_errors"] > 0
    # no database was open in the master when it forked its workers (SQLite forbids that)
    assert master_held == []
