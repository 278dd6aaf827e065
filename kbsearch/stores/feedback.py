"""The search and feedback log: its records, their validation and their stored form.

Every search the service answers is logged as a ``SearchLog``: the query, its embedding, and
the ranked list that was shown (``ShownResult``) with each result's feature vector. A
``FeedbackEvent`` refers to a logged search by its ``search_id`` and to one of the articles
shown in it. Training reads both back, ordered by time.

``FeedbackStore`` is the interface of the store; ``SQLiteFeedbackStore``
(:mod:`kbsearch.stores.feedback_sqlite`) is the one kbsearch ships. The checks and the stored
form of a record live here, so that every implementation accepts and stores the same: arrays
as little-endian raw bytes (``numpy.tobytes``; the query vector as float16, features as
float32), never pickled, and feature names as JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from numbers import Integral, Real
from typing import Literal, Protocol, get_args, runtime_checkable

import numpy as np

from kbsearch.content.visibility import Caller
from kbsearch.errors import FeedbackError

Event = Literal["impression", "click", "helpful", "not_helpful", "resolved", "escalated"]
Channel = Literal["api", "faq", "bot", "agent"]
EVENTS: tuple[str, ...] = get_args(Event)
CHANNELS: tuple[str, ...] = get_args(Channel)

# the channel a caller's searches and feedback are logged under: its key's role decides
KEY_CHANNELS: dict[str | None, str] = {None: "api", "bot": "bot", "agent": "agent",
                                       "editor": "agent"}

_VECTOR_DTYPE = np.dtype("<f2")
_FEATURE_DTYPE = np.dtype("<f4")
_VECTOR_MAX = float(np.finfo(_VECTOR_DTYPE).max)
_FEATURE_MAX = float(np.finfo(_FEATURE_DTYPE).max)
# the stored form: a searches row and a shown row hold these columns, in this order
SEARCH_COLUMNS = (
    "search_id, created, query, language, channel, client, index_version, model_version, "
    "feature_names, query_vector, synthetic, owner"
)
SHOWN_COLUMNS = "search_id, position, article_id, probability, features"


@dataclass(frozen=True)
class ShownResult:
    """One result as it was shown: article, 1-based position, probability and features."""

    article_id: str
    position: int
    probability: float
    features: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class SearchLog:
    """One answered search: the query, its embedding and the ranked results it showed.

    ``query_vector`` is stored as float16 and comes back as float32; ``features`` are stored
    as float32, so values computed in float32 come back exactly. ``synthetic`` marks a
    search that no person typed (the FAQ page searches an article's title to attach a
    vote made while browsing): it holds feedback, but training never learns from its query.
    ``owner`` is the id of the API key that searched ("" without a key): feedback on the
    search is accepted only from that key, or with the search's signed feedback token.
    """

    search_id: str
    created: float
    query: str
    language: str | None
    channel: str
    client: str
    index_version: str
    model_version: str
    feature_names: tuple[str, ...]
    query_vector: np.ndarray
    results: tuple[ShownResult, ...]
    synthetic: bool = False
    owner: str = ""

    def __eq__(self, other: object) -> bool:
        """Return whether every field is equal, the query vectors element by element."""
        if not isinstance(other, SearchLog):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name))
            if f.name == "query_vector"
            else getattr(self, f.name) == getattr(other, f.name)
            for f in fields(self)
        )

    __hash__ = None  # type: ignore[assignment]  # holds an array


@dataclass(frozen=True)
class FeedbackEvent:
    """A client's feedback on one article shown in a logged search.

    ``position`` None means the position the article was shown at; ``created`` 0 means now.
    """

    search_id: str
    article_id: str
    event: str
    position: int | None
    channel: str
    client: str = ""
    created: float = 0.0


def channel_of(caller: Caller) -> str:
    """Return the channel of an API caller: api without a key, bot, or agent (editors too)."""
    return KEY_CHANNELS[caller.role]


@runtime_checkable
class FeedbackStore(Protocol):
    """Where searches and feedback events are kept; training reads them back in time order."""

    def log_search(self, search: SearchLog) -> None:
        """Store one search; raise FeedbackError if it is invalid or already logged."""
        ...

    def add_event(self, event: FeedbackEvent) -> FeedbackEvent:
        """Store one event and return it as stored; raise FeedbackError if it is invalid."""
        ...

    def get_search(self, search_id: str) -> SearchLog | None:
        """Return the logged search, or None when it was never logged."""
        ...

    def searches(
        self, since: float | None = None, until: float | None = None
    ) -> Iterator[SearchLog]:
        """Yield searches with since <= created < until, by created, then search_id."""
        ...

    def events(
        self, since: float | None = None, until: float | None = None
    ) -> Iterator[FeedbackEvent]:
        """Yield events with since <= created < until, by created, then insertion order."""
        ...

    def counts(self) -> dict[str, int]:
        """Return the number of searches, of events, and of events of each type."""
        ...

    def purge(self, before: float) -> int:
        """Delete the searches made before a time, with their results and events; count them."""
        ...

    def forget(self, text: str) -> int:
        """Delete the searches whose query contains a text (any case), with their events."""
        ...

    def close(self) -> None:
        """Release the store's resources; the store cannot be used afterwards."""
        ...


def _as_floats(values: object, parameter: str, what: str) -> np.ndarray:
    """Return values as a float64 array; raise FeedbackError if they are not numbers."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FeedbackError(parameter, f"{what} must be numbers: {exc}") from None


def _within(values: np.ndarray, limit: float) -> np.ndarray:
    """Return, per row of values (or for a 1-D array), whether all are finite and within limit."""
    return (np.abs(values) <= limit).all(axis=-1)


def _check_text(value: object, parameter: str, what: str, empty: bool = True) -> str:
    """Return value if it is a string (non-empty unless empty is True); else raise FeedbackError."""
    if not isinstance(value, str) or (not empty and not value):
        raise FeedbackError(parameter, f"{what} must be a {'' if empty else 'non-empty '}string")
    return value


def _check_channel(channel: object) -> str:
    """Return channel if it is one of CHANNELS; else raise FeedbackError."""
    if channel not in CHANNELS:
        raise FeedbackError(
            "channel", f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}"
        )
    return str(channel)


def _check_position(position: object, what: str) -> int:
    """Return position as an int if it is an integer of at least 1; else raise FeedbackError."""
    if isinstance(position, bool) or not isinstance(position, Integral) or position < 1:
        raise FeedbackError(
            "position", f"{what} must be an integer of at least 1, not {position!r}"
        )
    return int(position)


def _check_time(created: object, what: str) -> float:
    """Return created as a float if it is a finite, non-negative time; else raise FeedbackError."""
    if isinstance(created, bool) or not isinstance(created, Real):
        raise FeedbackError("created", f"{what} must be unix seconds, not {created!r}")
    if not math.isfinite(created) or created < 0:
        raise FeedbackError("created", f"{what} must be finite unix seconds >= 0, not {created!r}")
    return float(created)


def search_rows(search: SearchLog) -> tuple[tuple, list[tuple]]:
    """Return the searches row and the shown rows of a search; raise FeedbackError if invalid.

    The rows hold the columns of SEARCH_COLUMNS and SHOWN_COLUMNS, arrays as raw bytes.
    """
    search_id = _check_text(search.search_id, "search_id", "search_id", empty=False)
    where = f"search {search_id!r}"
    names = tuple(search.feature_names)
    for name in names:
        _check_text(name, "feature_names", f"feature names of {where}")
    vector = _as_floats(search.query_vector, "query_vector", where)
    if vector.ndim != 1:
        raise FeedbackError("query_vector", f"{where}: must be 1-D, has shape {vector.shape}")
    if not _within(vector, _VECTOR_MAX):
        raise FeedbackError(
            "query_vector", f"{where}: values must be finite and within ±{_VECTOR_MAX:g} "
            "(stored as float16)",
        )
    row = (
        search_id,
        _check_time(search.created, where),
        _check_text(search.query, "query", where),
        None if search.language is None else _check_text(search.language, "language", where),
        _check_channel(search.channel),
        _check_text(search.client, "client", where),
        _check_text(search.index_version, "index_version", where),
        _check_text(search.model_version, "model_version", where),
        json.dumps(names, ensure_ascii=False),
        vector.astype(_VECTOR_DTYPE).tobytes(),
        1 if search.synthetic else 0,
        _check_text(search.owner, "owner", where),
    )
    results = tuple(search.results)
    shown: list[tuple] = []
    articles: set[str] = set()
    positions: set[int] = set()
    for result in results:
        article_id = _check_text(result.article_id, "article_id", where, empty=False)
        what = f"result {article_id!r} of {where}"
        if article_id in articles:
            raise FeedbackError("article_id", f"{what} is listed twice")
        position = _check_position(result.position, what)
        if position in positions:
            raise FeedbackError("position", f"{what} repeats position {position}")
        probability = result.probability
        if (
            isinstance(probability, bool)
            or not isinstance(probability, Real)
            or not math.isfinite(probability)
        ):
            raise FeedbackError("probability", f"{what} must be a finite number")
        if len(result.features) != len(names):
            raise FeedbackError(
                "features",
                f"{what} has {len(result.features)} features, feature_names has {len(names)}",
            )
        articles.add(article_id)
        positions.add(position)
        shown.append((search_id, position, article_id, float(probability)))
    if not results:
        return row, []
    matrix = _as_floats([r.features for r in results], "features", where)
    fine = _within(matrix, _FEATURE_MAX)
    if not fine.all():
        bad = results[int(np.argmin(fine))].article_id
        raise FeedbackError(
            "features", f"result {bad!r} of {where}: values must be finite and within "
            f"±{_FEATURE_MAX:g} (stored as float32)",
        )
    blobs = matrix.astype(_FEATURE_DTYPE)
    return row, [(*head, blob.tobytes()) for head, blob in zip(shown, blobs, strict=True)]


def check_event(event: FeedbackEvent) -> None:
    """Check the fields of an event that need no database; raise FeedbackError if one is bad."""
    if event.event not in EVENTS:
        raise FeedbackError(
            "event", f"unknown event {event.event!r}; expected one of {', '.join(EVENTS)}"
        )
    _check_channel(event.channel)
    _check_text(event.search_id, "search_id", "search_id", empty=False)
    _check_text(event.article_id, "article_id", "article_id")
    _check_text(event.client, "client", "client")
    if event.position is not None:
        _check_position(event.position, "position")
    _check_time(event.created, "created")


def search_from_row(
    row: Sequence, names: tuple[str, ...], shown: list[ShownResult]
) -> SearchLog:
    """Return the SearchLog of a searches row (SEARCH_COLUMNS), its feature names and results."""
    return SearchLog(
        search_id=row[0], created=row[1], query=row[2], language=row[3], channel=row[4],
        client=row[5], index_version=row[6], model_version=row[7], feature_names=names,
        query_vector=np.frombuffer(row[9], dtype=_VECTOR_DTYPE).astype(np.float32),
        results=tuple(shown), synthetic=bool(row[10]), owner=row[11],
    )


def shown_results(rows: Sequence[Sequence]) -> list[ShownResult]:
    """Return the ShownResults of shown rows (SHOWN_COLUMNS), in the order of the rows."""
    if not rows:
        return []
    widths = {len(row[4]) // _FEATURE_DTYPE.itemsize for row in rows}
    values = np.frombuffer(b"".join(row[4] for row in rows), dtype=_FEATURE_DTYPE)
    if len(widths) == 1:
        features = list(map(tuple, values.reshape(len(rows), widths.pop()).tolist()))
    else:
        flat = values.tolist()
        features, start = [], 0
        for row in rows:
            end = start + len(row[4]) // _FEATURE_DTYPE.itemsize
            features.append(tuple(flat[start:end]))
            start = end
    return [
        ShownResult(row[2], row[1], row[3], feature)
        for row, feature in zip(rows, features, strict=True)
    ]


