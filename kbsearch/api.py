"""The WSGI entry point that deployments name: ``gunicorn 'kbsearch.api:create_app()'``.

The app itself is built in :mod:`kbsearch.http.app`.
"""

from kbsearch.http.app import create_app

__all__ = ["create_app"]
