"""Crash during reindex: builds killed with SIGKILL at seeded points while a client searches.

A real gunicorn server (tests/servers.py, the fake embedder) serves a copy of the sample
knowledge base's energy articles (a third of it, so that 40 builds take well under a
minute on two cores) while a client searches it at a steady rate. ``kbsearch index``
builds it again and again in a process of its own, each time with one article more, and
is killed with SIGKILL after a delay drawn from ``random.Random(SEED)``: every other one
over the length of one whole build, measured first, the others over the part of it that
writes the staging folder; so the kills land while Python starts, while the articles are
read, while the build is written, and around its publication. After every kill the
current build must be complete and open as the service opens it, and the next build must
succeed, publish the new article and remove what the killed one left behind. No search
may fail meanwhile.

Two moments a seeded delay hits only by luck are hit on purpose, by a build that kills
itself there: while it removes an old build, and between writing CURRENT's new content and
putting it in place. The next build must leave no trace of either.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from kbsearch.index.builds import (
    BUILDS,
    build_index,
    current_version,
    list_builds,
    open_index,
)

from .conftest import ARTICLES, ROOT
from .fakes import FakeEmbedder
from .servers import SteadySearches, fake_server, server_settings, start_build

# A build that kills itself with SIGKILL at one moment (argv: root, articles, index, when).
DIES = """
import os, shutil, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.fakes import FakeEmbedder
from kbsearch.index.builds import build_index

def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[4] == "pruning":  # after removing the manifest of an old build
    shutil.rmtree = lambda path, **options: (Path(path, "manifest.json").unlink(), die())
else:  # with CURRENT's new content written to a temporary file, before it replaces CURRENT
    replace = os.replace
    os.replace = lambda src, dst: die() if Path(dst).name == "CURRENT" else replace(src, dst)
build_index(Path(sys.argv[2]), Path(sys.argv[3]), FakeEmbedder())
"""
SEED = 13
KILLS = 20
SEARCHES_PER_SECOND = 12
QUERY = "Zählerstand melden"
# The files and folders of a complete build (the layout in kbsearch/index/builds.py).
BUILD_FILES = {"manifest.json", "articles.jsonl", "chunks.jsonl", "chunk_vectors.npy",
               "title_vectors.npy", "question_vectors.npy", "keyword"}  # flat: no dense.faiss

def _add_article(articles: Path, n: int) -> str:
    """Write article number ``n`` with a word of its own; return its id."""
    article_id = f"kill-{n}"
    (articles / f"{article_id}.md").write_text(
        f"---\nid: {article_id}\ntitle: Testartikel {n}\nlanguage: de\ncategory: test\n---\n"
        f"# Testartikel {n}\n\nDer Zählerstand für Messpunkt Quokka{n} wird halbjährlich "
        "gemeldet.\n", "utf-8")
    return article_id


@dataclass(frozen=True)
class Timing:
    """When, in seconds after its start, a whole build began writing, published and ended."""

    staging: float
    published: float
    whole: float

    def delay(self, draw: random.Random, n: int) -> tuple[float, bool]:
        """Draw the n-th kill: a delay over the whole run from the build's start, or (every
        other one) over the time the build writes its staging folder, counted from when
        that folder appears (where most of the steps are: a few hundredths of a second
        here, too short to hit by timing from the start). True: from the staging folder."""
        if n % 2:
            return draw.uniform(0, self.whole), False
        return draw.uniform(0, self.published - self.staging), True


def _timed_build(articles: Path, index: Path) -> Timing:
    """Run one whole build, watching its folder; return when it reached each phase."""
    started, before = time.monotonic(), current_version(index)
    staging = published = 0.0
    build = start_build(articles, index)
    while build.poll() is None:
        now = time.monotonic() - started
        if not staging and list((index / BUILDS).glob(".staging-*")):
            staging = now
        if not published and current_version(index) != before:
            published = now
        time.sleep(0.001)
    _, errors = build.communicate(timeout=60)
    assert build.returncode == 0, errors.decode()
    assert published > 0, "the build never published"
    if not staging:  # written and renamed between two looks: a phase under 10 ms
        staging = max(0.0, published - 0.01)
    assert staging < published, (staging, published)
    return Timing(staging, published, time.monotonic() - started)


def _kill_build(articles: Path, index: Path, delay: tuple[float, bool]) -> int:
    """Start a build, SIGKILL it ``delay`` seconds after its start (or after its staging
    folder appeared); return its exit status."""
    seconds, from_staging = delay
    build = start_build(articles, index)
    try:
        if from_staging:
            while build.poll() is None and not list((index / BUILDS).glob(".staging-*")):
                time.sleep(0.001)
        build.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(build.pid, signal.SIGKILL)
    finally:
        build.communicate(timeout=60)  # reaps it, whichever way it ended
    return build.returncode


def _assert_complete(index: Path) -> tuple[str, set[str]]:
    """Check that the current build is complete and opens as the service opens it.

    Returns its version and the ids of its articles.
    """
    version = current_version(index)
    assert version is not None
    assert {p.name for p in (index / BUILDS / version).iterdir()} == BUILD_FILES
    loaded = open_index(index, version)
    try:
        manifest = loaded.manifest
        assert manifest["version"] == version
        assert len(loaded.articles) == manifest["articles"]
        assert {a.id for a in loaded.articles} == set(manifest["content_hashes"])
        assert loaded.chunk_vectors.shape[0] == manifest["chunks"] == len(loaded.chunk_article)
        assert manifest["dense_index"] == "flat" and loaded.dense is None
        assert loaded.title_vectors.shape[0] == manifest["articles"]
        assert loaded.question_vectors.shape[0] == manifest["questions"]
        assert loaded.keyword.search(QUERY, 5)[0]
    finally:
        loaded.close()
    return version, set(loaded.positions)


def _assert_nothing_left(index: Path) -> list[Path]:
    """Check that nothing but complete builds is left in the index folder; return them."""
    assert {p.name for p in index.iterdir()} == {"CURRENT", "builds", ".lock"}
    builds = list((index / BUILDS).iterdir())  # no staging folder, no half-deleted build
    assert all((b / "manifest.json").exists() for b in builds), builds
    return builds


def _what_the_kill_left(index: Path, before: str, builds: list[str], status: int) -> str:
    """Name the phase a kill hit, from what it left: nothing, a staging folder, a build.

    ``before`` is the current build and ``builds`` the complete builds before the kill.
    """
    if status == 0:
        return "finished before the kill"
    if current_version(index) != before:
        return "after replacing CURRENT"
    if set(list_builds(index)) - set(builds):
        return "after renaming the build, before replacing CURRENT"
    staged = list((index / BUILDS).glob(".staging-*"))
    if staged:
        files = len(list(staged[0].iterdir()))
        return f"writing the staging folder ({files} of {len(BUILD_FILES)} files there)"
    return "before the staging folder"


@pytest.mark.slow  # 20 builds killed and 21 whole builds
def test_builds_killed_at_seeded_points_never_fail_a_search_nor_leave_a_broken_build(
        tmp_path):
    articles, index, data = tmp_path / "articles", tmp_path / "index", tmp_path / "data"
    shutil.copytree(ARTICLES / "energie", articles / "energie")
    shutil.copy(ARTICLES / "synonyms.txt", articles / "synonyms.txt")
    data.mkdir()
    build_index(articles, index, FakeEmbedder())
    path = f"/api/v1/search?q={urllib.parse.quote_plus(QUERY)}&k=3"
    random_delays, phases = random.Random(SEED), Counter[str]()
    with fake_server(tmp_path, server_settings(data, index, articles)) as server:
        client = SteadySearches(server.base, path, SEARCHES_PER_SECOND)
        client.start()
        try:
            timing = _timed_build(articles, index)
            for n in range(KILLS):
                article_id = _add_article(articles, n)
                before, builds = current_version(index), list_builds(index)
                assert before is not None
                status = _kill_build(articles, index, timing.delay(random_delays, n))
                phases[_what_the_kill_left(index, before, builds, status)] += 1
                current, ids = _assert_complete(index)
                assert (article_id in ids) == (current != before)  # published: complete
                build_index(articles, index, FakeEmbedder())  # the next build succeeds
                current, ids = _assert_complete(index)
                assert article_id in ids
                _assert_nothing_left(index)
        finally:
            answers = client.stop()
    failed = [a for a in answers if not a.ok]
    print(f"\ncrash during reindex: {KILLS} kill points (seed {SEED}; a whole build: staging "
          f"at {timing.staging:.1f} s, published at {timing.published:.1f} s, ended at "
          f"{timing.whole:.1f} s): {dict(sorted(phases.items()))}; {len(answers)} searches sent, "
          f"{len(failed)} failed, {len({a.version for a in answers})} index versions seen")
    assert answers and not failed, failed[:5]
    assert any(p.startswith("writing") for p in phases)  # some kills hit the build itself


@pytest.mark.parametrize("when", ["pruning", "replacing CURRENT"])
def test_a_build_killed_while_pruning_or_replacing_current_leaves_nothing_behind(
        small_kb, tmp_path, fake_embedder, when):
    index = tmp_path / "index"
    for _ in range(3):  # as many as are kept: the next build removes the oldest
        build_index(small_kb, index, fake_embedder)
    before = current_version(index)
    dies = subprocess.run([sys.executable, "-c", DIES, str(ROOT), str(small_kb), str(index),
                           when], capture_output=True, timeout=120)
    assert dies.returncode == -signal.SIGKILL, dies.stderr.decode()
    assert (current_version(index) == before) == (when != "pruning")  # pruning: published
    _assert_complete(index)
    build_index(small_kb, index, fake_embedder)
    assert len(_assert_nothing_left(index)) == 3  # as many as are kept
