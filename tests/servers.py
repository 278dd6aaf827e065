"""A real gunicorn server of kbsearch and ``kbsearch index`` over the fake embedder, and a
steady client for the server.

:func:`fake_server` starts the app under gunicorn with the settings ``kbsearch serve`` and
the Docker image use (:func:`kbsearch.http.server.run_gunicorn`), in a process group of its
own, with kbsearch's loggers at DEBUG into a log file, and stops the whole group when the
test is done, however it ends. The embedder is :class:`tests.fakes.FakeEmbedder`, so the
server starts in a few seconds and needs no model; a reindex started through the API
embeds with it too. :func:`start_build` runs ``kbsearch index`` as an operator does, in
a process (and process group) of its own, with the fake embedder in place of the model.

:class:`SteadySearches` sends searches at a steady rate from a thread, each over its own
kept-alive connection (so each answer comes from the worker that holds that connection),
and records every answer; :func:`connection_owners` says which worker holds a connection.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .conftest import ROOT

STARTUP_SECONDS = 60
STOP_SECONDS = 30
ESTABLISHED = "01"  # a TCP connection's state in /proc/net/tcp

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
run_gunicorn(app, "127.0.0.1", int(sys.argv[2]), int(sys.argv[4]), int(sys.argv[5]))
"""

BUILD = """
import sys
sys.path.insert(0, sys.argv[1])
import kbsearch.service
from tests.fakes import FakeEmbedder
kbsearch.service.default_embedder = lambda settings: FakeEmbedder()
from kbsearch.cli import main
main(["index", "--articles", sys.argv[2], "--index", sys.argv[3], "--quiet"])
"""


def start_build(articles: Path, index: Path) -> subprocess.Popen:
    """Start ``kbsearch index`` of these articles into this index, in a process group of its
    own (stdout dropped, stderr a pipe)."""
    return subprocess.Popen(
        [sys.executable, "-c", BUILD, str(ROOT), str(articles), str(index)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_settings(data: Path, index: Path, articles: Path) -> dict[str, str]:
    """Settings for a test server: stores under ``data``, no rate limits."""
    return {"articles": str(articles), "index": str(index),
            "feedback_db": str(data / "feedback.sqlite3"), "weights_dir": str(data / "w"),
            "keys_file": str(data / "keys.json"), "channels_db": str(data / "ch.sqlite3"),
            "rate_limit": "", "rate_limit_keyed": "", "rate_limit_callbacks": ""}


def request(url: str, data: dict | None = None, form: dict | None = None,
            key: str | None = None) -> tuple[int, bytes]:
    """Send one request; return its status and body, whatever the status."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = None
    if data is not None:
        body, headers["Content-Type"] = json.dumps(data).encode(), "application/json"
    elif form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    sent = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(sent, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass(frozen=True)
class Server:
    """A running test server: its address, its master process and its log file."""

    base: str
    process: subprocess.Popen
    log: Path

    @property
    def port(self) -> int:
        """Return the port the server listens on."""
        return int(self.base.rsplit(":", 1)[1])

    def workers(self) -> list[int]:
        """Return the process ids of gunicorn's workers (the master's children), sorted."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return sorted(int(pid) for pid in children.read_text().split())


def wait_until_up(base: str, process: subprocess.Popen, log: Path) -> None:
    """Wait until ``/healthz`` answers; fail with the log if the server died or never came."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=5).close()
            return
        except OSError:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process and its children (its own process group): TERM, then KILL."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_SECONDS)
    except ProcessLookupError:
        process.wait(timeout=STOP_SECONDS)


@contextmanager
def fake_server(folder: Path, values: dict[str, str], workers: int = 1,
                threads: int = 2) -> Iterator[Server]:
    """Serve kbsearch with these settings under gunicorn, over the fake embedder.

    The server's output goes to ``folder/server.log``; the server and its workers are
    stopped when the block ends (its log is complete then).
    """
    port, log = free_port(), folder / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER, json.dumps(values), str(port), str(ROOT),
             str(workers), str(threads)],
            cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base, process, log)
            yield Server(base, process, log)
        finally:
            stop_group(process)


@dataclass(frozen=True)
class Answer:
    """One search sent: when (``time.time()``), over which connection, what came back.

    ``port`` is the client's port of the connection (one per connection, 0 if none was
    made); ``status`` is 0 and ``error`` says why when no answer came.
    """

    sent: float
    received: float
    port: int
    status: int
    version: str = ""
    ids: tuple[str, ...] = ()
    error: str = ""

    @property
    def ok(self) -> bool:
        """Return whether the search was answered with 200 and at least one result."""
        return self.status == 200 and bool(self.ids)


class SteadySearches(threading.Thread):
    """Sends one search every ``1 / rate`` seconds over one kept-alive connection."""

    def __init__(self, base: str, path: str, rate: float) -> None:
        """Search ``base + path`` (a GET) ``rate`` times a second once started."""
        super().__init__(daemon=True)
        parts = urllib.parse.urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path, self.interval = path, 1.0 / rate
        self.answers: list[Answer] = []
        self._halt = threading.Event()
        self._connection: http.client.HTTPConnection | None = None

    def run(self) -> None:
        """Search until stopped, keeping the pace (a late answer delays no later search)."""
        start, n = time.time(), 0
        while not self._halt.is_set():
            self.answers.append(self._search())
            n += 1
            self._halt.wait(max(0.0, start + n * self.interval - time.time()))
        if self._connection is not None:
            self._connection.close()

    def _search(self) -> Answer:
        """Send one search and record its answer; a broken connection is made anew."""
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        sent, port = time.time(), 0
        try:
            self._connection.request("GET", self.path)
            port = self._connection.sock.getsockname()[1] if self._connection.sock else 0
            answer = self._connection.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            self._connection.close()
            self._connection = None
            return Answer(sent, time.time(), port, 0, error=repr(exc))
        received = time.time()
        try:
            found = json.loads(body)
            ids = tuple(result["id"] for result in found["results"])
            return Answer(sent, received, port, answer.status, found["index_version"], ids)
        except (ValueError, KeyError, TypeError):
            return Answer(sent, received, port, answer.status, error=body[:200].decode())

    def stop(self) -> list[Answer]:
        """Stop searching; return every answer, in the order sent."""
        self._halt.set()
        self.join(timeout=60)
        assert not self.is_alive(), "the searching thread did not stop"
        return self.answers


def connection_owners(server: Server) -> dict[int, int]:
    """Map the client port of each open connection to the server to the worker holding it.

    Read from ``/proc`` (Linux): a worker's socket descriptors name socket inodes, and
    ``/proc/net/tcp`` gives the two ends of the connection of each inode.
    """
    server_port = int(urllib.parse.urlsplit(server.base).port or 0)
    client_of: dict[str, int] = {}  # socket inode -> client port, for the server's end
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if int(local.split(":")[1], 16) == server_port and state == ESTABLISHED:
            client_of[inode] = int(remote.split(":")[1], 16)
    owners: dict[int, int] = {}
    for pid in server.workers():
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:  # closed meanwhile
                continue
            inode = target.removeprefix("socket:[").removesuffix("]")
            if target.startswith("socket:[") and inode in client_of:
                owners[client_of[inode]] = pid
    return owners
