"""A real gunicorn server for tests: the app over the fake embedder, as kbsearch serve runs it.

``running_server`` starts ``run_gunicorn`` (the settings of ``kbsearch serve`` and of the
Docker image, kbsearch.http.gunicorn_conf) in its own process group, waits until
``/healthz`` answers and stops the whole group afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .conftest import ARTICLES, ROOT
from .test_cli import free_port

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


def server_settings(data: Path, index: Path) -> dict[str, str]:
    """Return the settings of a test server: stores under ``data``, no rate limits."""
    return {"articles": str(ARTICLES), "index": str(index),
            "feedback_db": str(data / "feedback.sqlite3"), "weights_dir": str(data / "w"),
            "keys_file": str(data / "keys.json"), "channels_db": str(data / "ch.sqlite3"),
            "rate_limit": "", "rate_limit_keyed": "", "rate_limit_callbacks": ""}


def wait_until_up(base: str, process: subprocess.Popen, log: Path) -> None:
    """Wait until the server answers /healthz; fail with its log if it stopped or hung."""
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=5).close()
            return
        except OSError:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)


@contextmanager
def running_server(folder: Path, settings: dict[str, str]) -> Iterator[tuple[str, int]]:
    """Serve the app under these settings; yield its base URL and port; stop it afterwards.

    The server's output goes to ``folder/server.log``.
    """
    port, log = free_port(), folder / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER, json.dumps(settings), str(port), str(ROOT)],
            cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base, process, log)
            yield base, port
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
