import dataclasses
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from kbsearch.errors import (
    DuplicateFeedbackError,
    FeedbackError,
    FeedbackStoreError,
    KbsearchError,
    UnknownSearchError,
)
from kbsearch.stores import feedback_sqlite
from kbsearch.stores.feedback import (
    CHANNELS,
    EVENTS,
    FeedbackEvent,
    FeedbackStore,
    SearchLog,
    ShownResult,
    search_rows,
)
from kbsearch.stores.feedback_sqlite import SCHEMA_VERSION, SQLiteFeedbackStore

NAMES = ("dense", "keyword", "title", "freshness")


def make_search(
    search_id: str = "s1",
    created: float = 100.0,
    articles: tuple[str, ...] = ("a", "b", "c"),
    seed: int = 0,
    **overrides: object,
) -> SearchLog:
    """A search showing articles at positions 1, 2, 3… with float32 features."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((len(articles), len(NAMES))).astype(np.float32)
    results = tuple(
        ShownResult(article, i + 1, 1.0 / (i + 2), tuple(features[i].tolist()))
        for i, article in enumerate(articles)
    )
    values: dict[str, object] = {
        "search_id": search_id, "created": created, "query": "Zählerstand melden",
        "language": "de", "channel": "api", "client": "key-1a2b", "index_version": "v1",
        "model_version": "m1", "feature_names": NAMES,
        "query_vector": rng.standard_normal(16).astype(np.float32) / 4,
        "results": results,
    }
    values.update(overrides)
    return SearchLog(**values)


def result(
    article_id: str,
    position: int,
    probability: float = 0.5,
    features: tuple[float, ...] = (0.0,) * len(NAMES),
) -> ShownResult:
    """A shown result with neutral probability and features."""
    return ShownResult(article_id, position, probability, features)


def click(search_id: str = "s1", article_id: str = "b", **overrides: object) -> FeedbackEvent:
    """A click event on an article of a logged search."""
    values: dict[str, object] = {
        "search_id": search_id, "article_id": article_id, "event": "click",
        "position": None, "channel": "faq",
    }
    values.update(overrides)
    return FeedbackEvent(**values)


@pytest.fixture
def store(tmp_path):
    """A fresh store at a fixed clock of 5000.0, closed after the test."""
    opened = SQLiteFeedbackStore(tmp_path / "feedback.db", clock=lambda: 5000.0)
    yield opened
    opened.close()


def user_version(path) -> int:
    """The schema version recorded in the database file."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def table_names(path) -> set[str]:
    """The names of the tables in the database file."""
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def test_store_implements_the_protocol(store):
    assert isinstance(store, FeedbackStore)
    assert EVENTS == ("impression", "click", "helpful", "not_helpful", "resolved", "escalated")
    assert CHANNELS == ("api", "faq", "bot", "agent")


def test_search_round_trip(store):
    logged = make_search(results=tuple(reversed(make_search().results)))
    store.log_search(logged)
    back = store.get_search("s1")
    assert back is not None
    assert back.query_vector.dtype == np.float32 and back.query_vector.shape == (16,)
    assert np.allclose(back.query_vector, logged.query_vector, rtol=1e-3, atol=1e-4)
    assert not np.array_equal(back.query_vector, logged.query_vector)  # float16 on disk
    assert back.results == tuple(sorted(logged.results, key=lambda r: r.position))
    assert [r.position for r in back.results] == [1, 2, 3]
    for original in logged.results:
        shown = next(r for r in back.results if r.article_id == original.article_id)
        assert shown.features == original.features  # exact
        assert shown.probability == original.probability
    expected = dataclasses.replace(
        logged, query_vector=back.query_vector, results=back.results
    )
    assert back == expected
    assert back != dataclasses.replace(back, query_vector=back.query_vector + 1)
    assert back.feature_names == NAMES and back.language == "de"
    assert (back.created, back.query, back.client) == (100.0, "Zählerstand melden", "key-1a2b")


def test_search_without_results_language_or_features(store):
    store.log_search(
        make_search(
            "empty", articles=(), language=None, feature_names=(),
            query_vector=np.zeros(0, np.float32),
        )
    )
    back = store.get_search("empty")
    assert back.results == () and back.language is None and back.feature_names == ()
    assert back.query_vector.shape == (0,) and back.query_vector.dtype == np.float32


def test_searches_with_different_feature_sets_iterate_together(store):
    store.log_search(make_search("s1", created=1.0))
    store.log_search(
        make_search(
            "s2", created=2.0, feature_names=("only",),
            results=(result("x", 1, features=(0.25,)), result("y", 2, features=(-8.0,))),
        )
    )
    store.log_search(
        make_search("s3", created=3.0, feature_names=(), results=(result("z", 1, features=()),))
    )
    back = list(store.searches())
    assert [len(s.feature_names) for s in back] == [4, 1, 0]
    assert back[0].results == make_search("s1").results
    assert [r.features for r in back[1].results] == [(0.25,), (-8.0,)]
    assert back[2].results == (result("z", 1, features=()),)
    assert store.get_search("s3").results == back[2].results


def test_numpy_scalars_are_accepted(store):
    store.log_search(
        make_search(
            created=np.float64(10.5),
            results=(result("a", np.int64(1), probability=np.float32(0.5)),),
        )
    )
    assert store.get_search("s1").results == (result("a", 1, probability=0.5),)
    stored = store.add_event(click(article_id="a", position=np.int64(1), created=np.float32(3)))
    assert (stored.position, stored.created) == (1, 3.0)
    assert type(stored.position) is int and type(stored.created) is float


def test_get_search_returns_none_when_never_logged(store):
    assert store.get_search("nope") is None


def test_arrays_are_stored_as_plain_little_endian_bytes(store):
    logged = make_search()
    store.log_search(logged)
    conn = sqlite3.connect(store.path)
    try:
        vector = conn.execute("SELECT query_vector FROM searches").fetchone()[0]
        features = conn.execute(
            "SELECT features FROM shown WHERE article_id = 'a'"
        ).fetchone()[0]
    finally:
        conn.close()
    assert vector == logged.query_vector.astype("<f2").tobytes()
    assert features == np.asarray(logged.results[0].features, "<f4").tobytes()


def test_logging_the_same_search_twice_is_refused(store):
    store.log_search(make_search())
    with pytest.raises(FeedbackError) as caught:
        store.log_search(make_search(query="something else"))
    assert caught.value.parameter == "search_id" and "'s1'" in str(caught.value)
    assert store.counts()["searches"] == 1
    assert store.get_search("s1").query == "Zählerstand melden"


@pytest.mark.parametrize(
    ("overrides", "parameter"),
    [
        ({"search_id": ""}, "search_id"),
        ({"channel": "email"}, "channel"),
        ({"created": float("nan")}, "created"),
        ({"query_vector": np.ones((2, 8), np.float32)}, "query_vector"),
        ({"query_vector": np.array([1.0, np.inf], np.float32)}, "query_vector"),
        ({"query_vector": np.array([1.0, 1e6], np.float32)}, "query_vector"),
        ({"results": (result("a", 1, features=(1.0, 2.0)),)}, "features"),
        ({"results": (result("a", 1, features=(1.0, 2.0, np.nan, 0.0)),)}, "features"),
        ({"results": (result("a", 0),)}, "position"),
        ({"results": (result("a", 1, probability=float("nan")),)}, "probability"),
        ({"results": (result("a", 1), result("b", 1))}, "position"),
        ({"results": (result("a", 1), result("a", 2))}, "article_id"),
    ],
)
def test_invalid_search_is_refused_and_not_stored(store, overrides, parameter):
    with pytest.raises(FeedbackError) as caught:
        store.log_search(make_search(**overrides))
    assert type(caught.value) is FeedbackError
    assert caught.value.parameter == parameter
    assert str(caught.value).startswith(f"{parameter}: ")
    assert store.counts()["searches"] == 0


def test_add_event_fills_position_and_created(store):
    store.log_search(make_search())
    stored = store.add_event(click(client="10.0.0.1"))
    assert stored == click(client="10.0.0.1", position=2, created=5000.0)
    assert list(store.events()) == [stored]


def test_add_event_keeps_a_given_position_and_time(store):
    store.log_search(make_search())
    given = click(article_id="c", event="helpful", position=3, channel="agent", created=123.5)
    assert store.add_event(given) == given
    assert list(store.events()) == [given]


@pytest.mark.parametrize(
    ("overrides", "error", "parameter", "mentions"),
    [
        ({"event": "bought"}, FeedbackError, "event", "bought"),
        ({"channel": "email"}, FeedbackError, "channel", "email"),
        ({"search_id": ""}, FeedbackError, "search_id", "search_id"),
        ({"search_id": "never"}, UnknownSearchError, "search_id", "'never'"),
        ({"article_id": "zzz"}, FeedbackError, "article_id", "search 's1'"),
        ({"position": 0}, FeedbackError, "position", "at least 1"),
        ({"position": 3}, FeedbackError, "position", "position 2"),
        ({"created": -1.0}, FeedbackError, "created", "-1.0"),
    ],
)
def test_invalid_event_is_refused_and_not_stored(store, overrides, error, parameter, mentions):
    store.log_search(make_search())
    with pytest.raises(FeedbackError) as caught:
        store.add_event(click(**overrides))
    assert type(caught.value) is error
    assert caught.value.parameter == parameter
    assert mentions in str(caught.value)
    assert store.counts()["events"] == 0


def test_duplicate_event_is_refused_and_stored_once(store):
    store.log_search(make_search())
    store.add_event(click())
    with pytest.raises(DuplicateFeedbackError) as caught:
        store.add_event(click(position=2, channel="bot", created=9.0))
    assert caught.value.parameter == "event"
    assert all(word in str(caught.value) for word in ("click", "'b'", "'s1'"))
    assert isinstance(caught.value, FeedbackError) and isinstance(caught.value, KbsearchError)
    store.add_event(click(event="helpful"))
    store.add_event(click(article_id="a"))
    assert [(e.article_id, e.event) for e in store.events()] == [
        ("b", "click"), ("b", "helpful"), ("a", "click"),
    ]


def test_counts(store):
    empty = store.counts()
    assert list(empty) == ["searches", "events", *EVENTS]
    assert set(empty.values()) == {0}
    store.log_searches([make_search("s1"), make_search("s2")])
    store.add_events([
        click("s1", "a", event="impression"), click("s1", "b", event="impression"),
        click("s1", "b"), click("s2", "c"), click("s2", "c", event="resolved"),
    ])
    assert store.counts() == {
        "searches": 2, "events": 5, "impression": 2, "click": 2, "helpful": 0,
        "not_helpful": 0, "resolved": 1, "escalated": 0,
    }


def test_since_and_until_filter_and_order(store):
    for search_id, created in [("c", 30.0), ("b", 20.0), ("z", 10.0), ("a", 20.0)]:
        store.log_search(make_search(search_id, created=created))
    assert [s.search_id for s in store.searches()] == ["z", "a", "b", "c"]
    assert [s.search_id for s in store.searches(since=20.0)] == ["a", "b", "c"]
    assert [s.search_id for s in store.searches(until=20.0)] == ["z"]
    assert [s.search_id for s in store.searches(since=15.0, until=30.0)] == ["a", "b"]
    store.add_events([
        click("c", "a", created=30.0), click("a", "a", created=20.0),
        click("z", "a", created=20.0), click("b", "a", created=10.0),
    ])
    assert [e.search_id for e in store.events()] == ["b", "a", "z", "c"]
    assert [e.search_id for e in store.events(since=20.0)] == ["a", "z", "c"]
    assert [e.search_id for e in store.events(until=20.0)] == ["b"]
    assert [e.search_id for e in store.events(since=20.0, until=30.0)] == ["a", "z"]
    assert list(store.events(since=31.0)) == [] and list(store.searches(until=10.0)) == []


def test_iteration_pages_through_ties_in_order(store, monkeypatch):
    monkeypatch.setattr(feedback_sqlite, "_PAGE", 2)
    created = [1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 1.0]
    store.log_searches(make_search(f"s{i}", created=c) for i, c in enumerate(created))
    expected = sorted((c, f"s{i}") for i, c in enumerate(created))
    assert [(s.created, s.search_id) for s in store.searches()] == expected
    assert all(len(s.results) == 3 for s in store.searches())
    events = [click(f"s{i}", "a", created=c) for i, c in enumerate(reversed(created))]
    store.add_events(events)
    order = sorted(range(len(events)), key=lambda i: (events[i].created, i))
    assert [e.search_id for e in store.events()] == [events[i].search_id for i in order]


def test_store_can_be_written_while_iterating(store):
    store.log_searches(make_search(f"s{i}", created=float(i)) for i in range(5))
    seen = []
    for search in store.searches():
        store.add_event(click(search.search_id, "a"))
        seen.append(search.search_id)
    assert seen == [f"s{i}" for i in range(5)]
    assert store.counts()["events"] == 5


def test_bulk_add_events_stores_all_or_none(store):
    store.log_search(make_search())
    assert store.add_events([]) == 0
    with pytest.raises(FeedbackError) as caught:
        store.add_events([click(article_id="a"), click(), click(article_id="zzz")])
    assert caught.value.parameter == "article_id"
    with pytest.raises(UnknownSearchError):
        store.add_events([click(article_id="a"), click(search_id="other")])
    with pytest.raises(DuplicateFeedbackError):
        store.add_events([click(article_id="a"), click(), click(article_id="a")])
    with pytest.raises(FeedbackError) as caught:
        store.add_events([click(article_id="a"), click(event="bought")])
    assert caught.value.parameter == "event"
    assert store.counts()["events"] == 0
    stored = store.add_events(
        [click(article_id="a"), click(), click(event="resolved", created=1.0)]
    )
    assert stored == 3
    assert [(e.article_id, e.position, e.created) for e in store.events()] == [
        ("b", 2, 1.0), ("a", 1, 5000.0), ("b", 2, 5000.0),
    ]


def test_bulk_log_searches_stores_all_or_none(store):
    store.log_search(make_search("s1"))
    with pytest.raises(FeedbackError) as caught:
        store.log_searches([make_search("s2"), make_search("s1")])
    assert caught.value.parameter == "search_id"
    with pytest.raises(FeedbackError):
        store.log_searches([make_search("s2"), make_search("s3"), make_search("s3")])
    with pytest.raises(FeedbackError):
        store.log_searches([make_search("s2"), make_search("s4", channel="web")])
    assert store.counts()["searches"] == 1 and store.get_search("s2") is None
    assert store.log_searches(make_search(f"n{i}") for i in range(3)) == 3
    assert store.counts()["searches"] == 4


def test_data_persists_after_close_and_reopen(tmp_path):
    path = tmp_path / "fb.db"
    logged = make_search()
    with SQLiteFeedbackStore(path) as first:
        first.log_search(logged)
        event = first.add_event(click(created=7.0))
        before = first.get_search("s1")
    with SQLiteFeedbackStore(path) as second:
        assert second.get_search("s1") == before
        assert list(second.events()) == [event]
        assert second.counts()["searches"] == 1
        with pytest.raises(DuplicateFeedbackError):
            second.add_event(click())


def test_closed_store_refuses_use(tmp_path):
    closed = SQLiteFeedbackStore(tmp_path / "fb.db")
    closed.close()
    closed.close()
    with pytest.raises(FeedbackStoreError, match="closed"):
        closed.counts()
    with pytest.raises(FeedbackStoreError, match="closed"):
        list(closed.events())


def test_new_store_creates_its_folder_and_uses_wal(tmp_path):
    path = tmp_path / "deep" / "er" / "fb.db"
    with SQLiteFeedbackStore(path):
        assert path.exists()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_empty_database_is_migrated(tmp_path):
    path = tmp_path / "fb.db"
    sqlite3.connect(path).close()
    assert user_version(path) == 0
    with SQLiteFeedbackStore(path) as opened:
        opened.log_search(make_search())
    assert user_version(path) == SCHEMA_VERSION == len(feedback_sqlite.MIGRATIONS)
    assert {"searches", "shown", "events"} <= table_names(path)


def test_reopening_is_idempotent(tmp_path):
    path = tmp_path / "fb.db"
    with SQLiteFeedbackStore(path) as opened:
        opened.log_search(make_search())
    tables = table_names(path)
    for _ in range(2):
        with SQLiteFeedbackStore(path) as opened:
            assert opened.counts()["searches"] == 1
    assert user_version(path) == SCHEMA_VERSION and table_names(path) == tables


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "fb.db"
    SQLiteFeedbackStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(FeedbackStoreError) as caught:
        SQLiteFeedbackStore(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"version {SCHEMA_VERSION + 1}" in message and f"version {SCHEMA_VERSION}" in message
    assert user_version(path) == SCHEMA_VERSION + 1


def test_later_migrations_apply_in_order_to_an_existing_store(tmp_path, monkeypatch):
    path = tmp_path / "fb.db"
    with SQLiteFeedbackStore(path) as opened:
        opened.log_search(make_search())
    added = ("ALTER TABLE searches ADD COLUMN note TEXT", "UPDATE searches SET note = 'kept'")
    monkeypatch.setattr(feedback_sqlite, "MIGRATIONS", (*feedback_sqlite.MIGRATIONS, added))
    with SQLiteFeedbackStore(path) as opened:
        assert opened.get_search("s1") is not None
    assert user_version(path) == SCHEMA_VERSION + 1
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT note FROM searches").fetchall() == [("kept",)]
    finally:
        conn.close()


def test_failed_migration_rolls_back_every_step(tmp_path, monkeypatch):
    path = tmp_path / "fb.db"
    broken = ("CREATE TABLE half (x)", "CREATE TABLE broken (")
    monkeypatch.setattr(feedback_sqlite, "MIGRATIONS", (*feedback_sqlite.MIGRATIONS, broken))
    with pytest.raises(FeedbackStoreError, match=str(path)):
        SQLiteFeedbackStore(path)
    assert user_version(path) == 0
    assert table_names(path) == set()


@pytest.mark.parametrize("content", [b"this is not a database" * 200, None])
def test_unusable_file_raises_store_error(tmp_path, content):
    path = tmp_path / "fb.db"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(FeedbackStoreError, match="cannot open feedback store"):
        SQLiteFeedbackStore(path)


def test_concurrent_writers_on_one_store_lose_nothing(store):
    threads, per_thread = 4, 200
    articles = tuple(f"a{j}" for j in range(10))
    start = threading.Barrier(threads + 1)

    def write(worker: int) -> list[FeedbackEvent]:
        start.wait()
        stored = []
        for i in range(per_thread):
            search_id = f"w{worker}-{i // 10}"
            if i % 10 == 0:
                store.log_search(make_search(search_id, articles=articles))
            stored.append(store.add_event(click(search_id, articles[i % 10], channel="bot")))
        return stored

    def read() -> int:
        start.wait()
        return max(sum(1 for _ in store.events()) for _ in range(20))

    with ThreadPoolExecutor(threads + 1) as pool:
        writers = [pool.submit(write, worker) for worker in range(threads)]
        reader = pool.submit(read)
        written = [event for future in writers for event in future.result()]
    assert reader.result() <= threads * per_thread
    assert len(written) == threads * per_thread
    counts = store.counts()
    assert counts["events"] == counts["click"] == threads * per_thread
    assert counts["searches"] == threads * per_thread // 10
    assert sorted(store.events(), key=repr) == sorted(written, key=repr)


def test_concurrent_stores_on_one_file_lose_nothing(tmp_path):
    path = tmp_path / "fb.db"
    with SQLiteFeedbackStore(path) as setup:
        setup.log_search(make_search(articles=tuple(f"a{j}" for j in range(50))))
    threads = 4
    events = ("impression", "click", "helpful", "resolved")

    def write(worker: int) -> None:
        with SQLiteFeedbackStore(path) as own:
            for j in range(50):
                own.add_event(click(article_id=f"a{j}", event=events[worker]))

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(write, worker) for worker in range(threads)]:
            future.result()
    with SQLiteFeedbackStore(path) as check:
        counts = check.counts()
    assert counts["events"] == 200
    assert all(counts[name] == 50 for name in events)


def test_a_search_is_stored_as_synthetic_or_not_and_old_stores_gain_the_mark(
    tmp_path, monkeypatch
):
    path = tmp_path / "fb.db"
    # a store written before the mark existed (schema version 1)
    monkeypatch.setattr(feedback_sqlite, "MIGRATIONS", feedback_sqlite.MIGRATIONS[:1])
    SQLiteFeedbackStore(path).close()
    monkeypatch.undo()
    row, _ = search_rows(make_search("typed-before", articles=()))
    with sqlite3.connect(path) as conn:  # a row as the old code wrote it: no synthetic column
        conn.execute("INSERT INTO searches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row[:10])
    conn.close()
    assert user_version(path) == 1
    with SQLiteFeedbackStore(path) as opened:
        opened.log_search(make_search("made-up", synthetic=True))
        assert user_version(path) == SCHEMA_VERSION
        assert not opened.get_search("typed-before").synthetic
        assert opened.get_search("made-up").synthetic
        assert {s.search_id: s.synthetic for s in opened.searches()} == {
            "typed-before": False, "made-up": True}
