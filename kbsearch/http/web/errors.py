"""The FAQ's error pages: in the interface language, with the way to a human, never a trace."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, render_template, request
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge, TooManyRequests

from kbsearch.errors import ArticleNotFoundError, IndexNotFoundError, ModelError

log = logging.getLogger(__name__)


def render_error(status: int, title_key: str, text_key: str) -> tuple[str, int]:
    """Render the error page with a title and a text from the interface texts."""
    return render_template("error.html", status=status, title_key=title_key,
                           text_key=text_key, human_first=status >= 500), status


def not_found(exc: Exception) -> Any:
    """Show the 404 page for an unknown article, topic or address."""
    return render_error(404, "not_found_title", "not_found_text")


def too_large(exc: RequestEntityTooLarge) -> Any:
    """Ask for shorter input when a form was larger than FORM_MAX_BYTES."""
    return render_error(413, "error_title", "callback_too_large")


def unavailable(exc: Exception) -> Any:
    """Say that the help is unavailable for a moment, and offer the way to a human."""
    log.error("FAQ page unavailable: %s", exc)
    return render_error(503, "error_title", "search_unavailable")


def too_many(exc: TooManyRequests) -> Any:
    """Ask a client over its rate limit to wait, and offer the way to a human."""
    return render_error(429, "too_many_title", "too_many_text")


def http_error(exc: HTTPException) -> Any:
    """Show other HTTP errors (such as a wrong method) as a page, not a stack trace."""
    status = exc.code or 500
    return render_error(status, "error_title", "method_text" if status == 405 else "error_text")


def error_page(exc: HTTPException) -> Any:
    """Show an HTTP error outside any route (an unknown address) as the FAQ's own page."""
    if isinstance(exc, NotFound):
        return not_found(exc)
    if isinstance(exc, TooManyRequests):
        return too_many(exc)
    return http_error(exc)


def unexpected(exc: Exception) -> Any:
    """Log an unexpected error and show a page that offers the way to a human."""
    log.exception("unexpected error on %s", request.path)
    return render_error(500, "error_title", "error_text")


def register_error_pages(blueprint: Blueprint) -> None:
    """Show the FAQ's error pages for the blueprint's errors."""
    blueprint.register_error_handler(ArticleNotFoundError, not_found)
    blueprint.register_error_handler(NotFound, not_found)
    blueprint.register_error_handler(RequestEntityTooLarge, too_large)
    blueprint.register_error_handler(IndexNotFoundError, unavailable)
    blueprint.register_error_handler(ModelError, unavailable)
    blueprint.register_error_handler(TooManyRequests, too_many)
    blueprint.register_error_handler(HTTPException, http_error)
    blueprint.register_error_handler(Exception, unexpected)
