"""Shared fixtures: the sample knowledge base indexed with a fake embedder, and with the real one.

Plumbing tests (API shapes, auth, limits, feedback, channels, CLI, pages, indexing) run on
``sample_index``, built with the fake embedder of tests/fakes.py in a few seconds. Tests of
search quality and of the model itself run on ``model_index`` or ``embedder``, the real
default model: every test that uses ``embedder``, directly or through another fixture, is
marked ``model`` (and one that loads the model some other way carries the mark by hand), so
``pytest -m "not model and not slow"`` is the fast loop and plain ``pytest`` runs everything.

``sample_service`` and ``model_service`` are fresh per test, with their own feedback store,
weights, channels database and keys file under the test's tmp_path, over the shared
read-only index; ``app`` and ``client`` serve ``sample_service``.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from whoosh import index as whoosh_index

from kbsearch.config import Settings, load_settings
from kbsearch.content.analysis import Lexicon
from kbsearch.content.articles import load_articles
from kbsearch.index.keyword import _document, build_keyword_index, make_schema

from .fakes import FakeEmbedder

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = ROOT / "articles"
MODEL = Path(os.environ.get("KBSEARCH_MODEL", ROOT / "models" / "multilingual-e5-small"))
SHARED_EVAL = ROOT.parent / "shared" / "eval"
# Fixtures of the real model: a test that uses one of them must not also use a fake one.
REAL = "embedder"
FAKE = ("fake_embedder", "sample_index")


def make_settings(tmp: Path, **overrides: object) -> Settings:
    """Settings for a test: no environment, the real model, folders under tmp."""
    values: dict[str, object] = {
        "articles": ARTICLES, "index": tmp / "index", "model": str(MODEL),
        "feedback_db": tmp / "feedback.sqlite3", "weights_dir": tmp / "weights",
        "keys_file": tmp / "keys.json", "channels_db": tmp / "channels.sqlite3",
        # tests send many requests from one address; tests/test_ratelimit.py sets limits
        "rate_limit": "", "rate_limit_keyed": "", "rate_limit_callbacks": "",
        "rate_limit_auth_failures": "",
        # apps purge old entries on their first request; tests/test_retention.py turns it on
        "purge_every_hours": 0,
    }
    values.update(overrides)
    return load_settings(environ={}, **values)


def pytest_configure(config: pytest.Config) -> None:
    """Run OpenMP libraries single-threaded unless OMP_NUM_THREADS says otherwise.

    On the two cores that test runs share, OpenMP threads spinning while they wait
    (scikit-learn's trees, FAISS, torch) cost more time than they save.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the real model ``model``; refuse tests that mix the two."""
    mixed = []
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if REAL in names:
            item.add_marker(pytest.mark.model)
            if names & set(FAKE):
                mixed.append(item.nodeid)
    if mixed:
        raise pytest.UsageError(
            "these tests use the real embedder together with the fake one or its index "
            "(use model_index / model_service with the real model): " + ", ".join(mixed)
        )


def _refuse_model(settings: Settings):
    raise AssertionError(
        "this test loads the real embedding model without the 'model' mark: use the "
        "fake_model fixture, or the embedder fixture (or @pytest.mark.model) for the real one"
    )


@pytest.fixture(autouse=True)
def _thaw_the_heap() -> Iterator[None]:
    """A test that warms a service up freezes the heap (kbsearch.heap); thaw it after, so
    that the test process's cyclic garbage is collected as usual."""
    yield
    gc.unfreeze()


@pytest.fixture(autouse=True)
def _only_marked_tests_load_the_model(request, monkeypatch) -> None:
    """Keep the fast subset honest: without the ``model`` mark, loading the model fails."""
    if request.node.get_closest_marker("model") is None:
        monkeypatch.setattr("kbsearch.service.default_embedder", _refuse_model)


@pytest.fixture(scope="session")
def fake_embedder() -> FakeEmbedder:
    """The fake embedder of tests/fakes.py: hashed words and trigrams, no torch."""
    return FakeEmbedder()


@pytest.fixture
def fake_model(monkeypatch, fake_embedder) -> FakeEmbedder:
    """Make the CLI and services that load the configured model get the fake one."""
    monkeypatch.setattr("kbsearch.service.default_embedder", lambda settings: fake_embedder)
    return fake_embedder


@pytest.fixture(scope="session")
def embedder():
    """The real default embedding model, loaded once per test run."""
    if not (MODEL / "model.safetensors").exists():
        pytest.fail(f"default model missing at {MODEL}; run scripts/setup.sh first")
    from kbsearch.service import default_embedder

    return default_embedder(load_settings(environ={}, model=str(MODEL)))


def build_sample(folder: Path, embedder) -> Path:
    """Build an index of the bundled sample knowledge base in folder/index."""
    from kbsearch.index.builds import build_index

    index_dir = folder / "index"
    build_index(ARTICLES, index_dir, embedder)
    return index_dir


def service_over(folder: Path, index: Path, embedder, **settings: object):
    """A search service over an index, its stores and other files in folder."""
    from kbsearch.service import SearchService

    return SearchService(make_settings(folder, index=index, **settings), embedder=embedder)


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory, fake_embedder) -> Path:
    """An index of the sample knowledge base with the fake embedder, built once per run."""
    return build_sample(tmp_path_factory.mktemp("sample"), fake_embedder)


@pytest.fixture(scope="session")
def model_index(tmp_path_factory, embedder) -> Path:
    """An index of the sample knowledge base with the real model, built once per run."""
    return build_sample(tmp_path_factory.mktemp("model-sample"), embedder)


@pytest.fixture
def sample_service(tmp_path, sample_index, fake_embedder):
    """A search service over the fake sample index, with this test's own stores."""
    return service_over(tmp_path / "service", sample_index, fake_embedder)


@pytest.fixture
def model_service(tmp_path, model_index, embedder):
    """A search service over the real model's sample index, with this test's own stores."""
    return service_over(tmp_path / "model-service", model_index, embedder)


def use_callbacks(app, store) -> None:
    """Serve an app with another store of callback requests."""
    from kbsearch.http.context import Components

    dataclasses.replace(Components.of(app), callbacks=store).init_app(app)


@pytest.fixture
def app(sample_service):
    """A Flask app over the fake sample index, with this test's own stores and keys file."""
    from kbsearch.api import create_app

    return create_app({"TESTING": True}, settings=sample_service.settings,
                      search_service=sample_service)


@pytest.fixture
def client(app):
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def small_kb(tmp_path) -> Path:
    """A copy of four sample articles in a fresh folder, for indexing tests."""
    folder = tmp_path / "articles"
    folder.mkdir()
    for name in ("energie/zaehlerstand-melden.md", "energie/abschlag-anpassen.md",
                 "telekom/router-stoerung-en.md", "intern/kulanz-gutschrift-regeln.md"):
        shutil.copy(ARTICLES / name, folder / Path(name).name)
    return folder


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1200, "height": 900}


def missing_browser() -> str | None:
    """Say what is missing to run the browser tests, or None when all is there."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: .venv/bin/pip install -e '.[dev]'"
    if not CHROMIUM.exists():
        return (f"Chromium is missing at {CHROMIUM}: install it with "
                "'apt-get install -y chromium' (scripts/test.sh does so)")
    return None


@pytest.fixture(scope="module")
def browser():
    """Chromium, headless, started once per module of browser tests (skipped without it,
    except under CI, where a missing browser fails)."""
    missing = missing_browser()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run under CI: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser tab (own cookies) with JavaScript on."""
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


@pytest.fixture
def plain_page(browser):
    """A fresh browser tab with JavaScript off."""
    context = browser.new_context(viewport=VIEWPORT, java_script_enabled=False)
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


@contextmanager
def serving(app: Any, name: str = "kbsearch-server") -> Iterator[str]:
    """Serve an app for the browser on 127.0.0.1, a free port (a werkzeug server in a
    thread); yield its address, and stop the server afterwards."""
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        httpd.server_close()


@pytest.fixture(scope="session")
def segmented(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keyword index of the bundled articles in three segments, two with deletions:
    articles changed and copies added twice, committed without merging (as a reindex
    may)."""
    folder = tmp_path_factory.mktemp("segmented")
    articles = list(load_articles(ARTICLES).articles)
    lexicon = Lexicon(frozenset())
    build_keyword_index(folder, articles, lexicon)
    ix = whoosh_index.open_dir(str(folder), schema=make_schema(lexicon))
    for round_, changed in enumerate((articles[:5], articles[3:12:2]), start=1):
        writer = ix.writer()
        for article in changed:
            writer.delete_by_term("id", article.id)
            body = f"{article.body}\n\nStand {round_}: Zählerstand Router Rechnung."
            writer.add_document(**_document(dataclasses.replace(article, body=body)))
        for number in range(150 * round_):  # so that some postings fill several blocks
            copy = articles[number % len(articles)]
            copy = dataclasses.replace(copy, id=f"copy-{round_}-{number}")
            writer.add_document(**_document(copy))
        writer.commit(merge=False)
    return folder
