"""Settings of kbsearch: one table of name, default and help, read from ``KBSEARCH_*`` variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbsearch.errors import ConfigError

ENV_PREFIX = "KBSEARCH_"


@dataclass(frozen=True)
class Setting:
    """One documented setting: its field name, default, parser and help text."""

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any]

    @property
    def env(self) -> str:
        """Return the environment variable that sets this setting."""
        return ENV_PREFIX + self.name.upper()


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def _unit_float(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def _languages(raw: str) -> tuple[str, ...]:
    langs = tuple(part.strip() for part in raw.split(",") if part.strip())
    unknown = [lang for lang in langs if lang not in ("de", "en")]
    if unknown or not langs:
        raise ValueError("must be a comma-separated list of de, en")
    return langs


SETTINGS: tuple[Setting, ...] = (
    Setting("articles", Path("articles"), "Folder of Markdown articles to index.", Path),
    Setting("index", Path("index"), "Folder that holds the versioned index builds.", Path),
    Setting(
        "model",
        "models/multilingual-e5-small",
        "Sentence-transformers model name or path used for embeddings.",
        str,
    ),
    Setting(
        "query_prompt", "query: ", "Prompt put before queries for the embedding model.", str
    ),
    Setting(
        "passage_prompt", "passage: ", "Prompt put before passages for the embedding model.", str
    ),
    Setting("device", "cpu", "Torch device for the embedding model (cpu, cuda, ...).", str),
    Setting("batch_size", 32, "Texts per batch when embedding articles.", _positive_int),
    Setting(
        "chunk_tokens",
        256,
        "Largest chunk of an article, in model tokens, that is embedded as one vector.",
        _positive_int,
    ),
    Setting(
        "exact_limit",
        50_000,
        "Up to this many chunks the dense index is exact (flat); above it, HNSW.",
        _positive_int,
    ),
    Setting(
        "candidates", 100, "How many hits each retriever hands to the ranking.", _positive_int
    ),
    Setting("default_k", 10, "Results returned when a search does not say k.", _positive_int),
    Setting("max_k", 100, "Largest k a search may ask for.", _positive_int),
    Setting(
        "max_query_chars", 1000, "Longest query accepted, in characters.", _positive_int
    ),
    Setting(
        "languages", ("de", "en"), "Languages articles may be written in.", _languages
    ),
    Setting(
        "weights",
        "",
        "Ranking weights JSON; empty means the weights shipped with kbsearch.",
        str,
    ),
    Setting(
        "min_probability",
        0.0,
        "Hits below this probability are left out of search results.",
        _unit_float,
    ),
    Setting(
        "keep_builds", 3, "How many old index builds to keep after a new one.", _positive_int
    ),
)


@dataclass(frozen=True)
class Settings:
    """Every setting kbsearch reads; build it with :func:`load_settings`."""

    articles: Path
    index: Path
    model: str
    query_prompt: str
    passage_prompt: str
    device: str
    batch_size: int
    chunk_tokens: int
    exact_limit: int
    candidates: int
    default_k: int
    max_k: int
    max_query_chars: int
    languages: tuple[str, ...]
    weights: str
    min_probability: float
    keep_builds: int

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some settings changed."""
        return dataclasses.replace(self, **changes)


def load_settings(
    environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Read settings: defaults, then ``KBSEARCH_*`` variables, then keyword overrides.

    Raises ConfigError naming the variable when a value cannot be parsed.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.env)
        if raw is None or raw == "":
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.env}={raw!r}: {exc}") from None
    unknown = set(overrides) - set(values)
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    values.update({name: value for name, value in overrides.items() if value is not None})
    return Settings(**values)
