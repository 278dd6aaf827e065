"""Shared fixtures: the real default model (loaded once) and a built sample index."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from kbsearch.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = ROOT / "articles"
MODEL = Path(os.environ.get("KBSEARCH_MODEL", ROOT / "models" / "multilingual-e5-small"))
SHARED_EVAL = ROOT.parent / "shared" / "eval"


def make_settings(tmp: Path, **overrides: object) -> Settings:
    """Settings for a test: no environment, the real model, folders under tmp."""
    values: dict[str, object] = {
        "articles": ARTICLES, "index": tmp / "index", "model": str(MODEL),
        "feedback_db": tmp / "feedback.sqlite3", "weights_dir": tmp / "weights",
        "keys_file": tmp / "keys.json", "channels_db": tmp / "channels.sqlite3",
        # tests send many requests from one address; tests/test_ratelimit.py sets limits
        "rate_limit": "", "rate_limit_keyed": "", "rate_limit_callbacks": "",
    }
    values.update(overrides)
    return load_settings(environ={}, **values)


@pytest.fixture(scope="session")
def embedder():
    """The real default embedding model, loaded once per test run."""
    if not (MODEL / "model.safetensors").exists():
        pytest.fail(f"default model missing at {MODEL}; run scripts/setup.sh first")
    from kbsearch.service import default_embedder

    return default_embedder(load_settings(environ={}, model=str(MODEL)))


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory, embedder) -> Path:
    """An index of the bundled sample knowledge base, built once per test run."""
    from kbsearch.index.builds import build_index

    index_dir = tmp_path_factory.mktemp("sample") / "index"
    build_index(ARTICLES, index_dir, embedder)
    return index_dir


@pytest.fixture(scope="session")
def sample_service(sample_index, embedder, tmp_path_factory):
    """A search service over the sample index."""
    from kbsearch.service import SearchService

    settings = make_settings(tmp_path_factory.mktemp("svc"), index=sample_index)
    return SearchService(settings, embedder=embedder)


def use_callbacks(app, store) -> None:
    """Serve an app with another store of callback requests."""
    from kbsearch.http.context import Components

    dataclasses.replace(Components.of(app), callbacks=store).init_app(app)


@pytest.fixture
def app(sample_service):
    """A Flask app over the sample index."""
    from kbsearch.api import create_app

    return create_app({"TESTING": True}, search_service=sample_service)


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
