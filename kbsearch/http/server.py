"""Run the Flask app under gunicorn from ``kbsearch serve``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from kbsearch.http import gunicorn_conf


def run_gunicorn(app: Flask, host: str, port: int, workers: int, threads: int,
                 worker_init: Callable[[], None] | None = None) -> None:
    """Serve the app with gunicorn, under the settings of gunicorn_conf, until interrupted.

    ``worker_init`` runs in each worker once it has started, before it takes requests.
    """
    from gunicorn.app.base import BaseApplication

    class _Server(BaseApplication):
        def __init__(self, application: Flask, options: dict[str, Any]) -> None:
            self.application = application
            self.options = options
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.options.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return self.application

    settings = {name: value for name, value in vars(gunicorn_conf).items()
                if not name.startswith("_")}  # the settings of the Docker image's command
    options = {**settings, "bind": f"{host}:{port}", "workers": workers, "threads": threads}
    if worker_init is not None:
        options["post_worker_init"] = lambda worker: worker_init()
    _Server(app, options).run()
