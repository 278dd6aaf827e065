"""The command group, shared options and settings of the kbsearch command line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kbsearch import __version__
from kbsearch.config import Settings, load_settings
from kbsearch.errors import KbsearchError

if TYPE_CHECKING:
    pass

MODE_CHOICES = ("hybrid", "keyword", "dense", "all")


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except KbsearchError as exc:
        raise click.ClickException(str(exc)) from None


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn kbsearch's named errors into a one-line message and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KbsearchError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def index_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --articles and --index, which default to the settings."""
    command = click.option(
        "--index", "index_dir", type=click.Path(path_type=Path, file_okay=False),
        help="Index folder (default: KBSEARCH_INDEX or index/ in KBSEARCH_HOME).",
    )(command)
    return click.option(
        "--articles", "articles_dir", type=click.Path(path_type=Path),
        help="Articles folder (default: KBSEARCH_ARTICLES or articles/ in KBSEARCH_HOME).",
    )(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kbsearch")
def main() -> None:
    """kbsearch: hybrid semantic search over a customer-service knowledge base.

    Settings come from KBSEARCH_* environment variables; 'kbsearch settings' lists them.
    """
