"""Run the Flask app under gunicorn from ``kbsearch serve``."""

from __future__ import annotations

from typing import Any

from flask import Flask

from kbsearch.http import gunicorn_conf


def run_gunicorn(app: Flask, host: str, port: int, workers: int, threads: int) -> None:
    """Serve the app with gunicorn until interrupted."""
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

    _Server(
        app,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            "worker_class": gunicorn_conf.worker_class,
            "timeout": gunicorn_conf.timeout,
            "accesslog": gunicorn_conf.accesslog,
            "access_log_format": gunicorn_conf.access_log_format,
        },
    ).run()
