"""Reindexing in the background: one job at a time, its state visible to every server process.

The dashboard and ``POST /api/v1/admin/reindex`` start a build of the articles folder into
the index folder in a thread of the server process that took the request. Its state lives in
one small JSON file beside the builds, replaced atomically on every change, so that every
gunicorn worker answers ``GET /api/v1/admin/reindex`` alike::

    index/
      reindex.json     the latest job: state, times, progress, result or error
      .reindex.lock    locked (flock) by the process whose thread runs the job

A job is ``queued`` (accepted), ``running``, then ``succeeded`` or ``failed``. Only one runs
at a time: starting takes the lock without waiting, and a second start while it is held is
refused with :class:`ReindexRunningError`. The lock belongs to the running process, so the
operating system releases it when that process dies; a job whose file still says running
while nobody holds the lock is then reported as failed and blocks nothing. The build itself
is :func:`kbsearch.index.builds.build_from_articles`: written beside the current build and
published by replacing ``CURRENT``, so searches go on being answered from the old build and
switch to the new one when it is complete.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, get_args

from kbsearch.content.articles import load_articles
from kbsearch.errors import ArticleError, IndexBuildError, KbsearchError
from kbsearch.fileio import atomic_write_text
from kbsearch.index.builds import BuildReport, build_from_articles, current_articles
from kbsearch.index.embedding import Embedder

log = logging.getLogger(__name__)
STATE_FILE = "reindex.json"
LOCK_FILE = ".reindex.lock"
START_ATTEMPTS = 20  # a reader checking for a dead job holds the lock for a moment
START_PAUSE_SECONDS = 0.01
JobState = Literal["queued", "running", "succeeded", "failed"]
JOB_STATES: tuple[str, ...] = get_args(JobState)
ACTIVE: frozenset[str] = frozenset({"queued", "running"})
DIED = ("the server process running this reindex stopped before it finished; the current "
        "index is unchanged, start it again")
UNEXPECTED = ("an unexpected error stopped the reindex (it has been logged); the current "
              "index is unchanged")


class ReindexRunningError(KbsearchError):
    """A reindex was asked for while another one runs; ``job`` is the running one."""

    def __init__(self, job: ReindexJob) -> None:
        self.job = job
        since = job.started or job.requested
        super().__init__(f"reindex {job.id} is {job.state} (since {since}); wait until it "
                         "has finished")


@dataclass(frozen=True)
class InvalidArticle:
    """An article file the build skipped, and why (file relative to the articles folder)."""

    file: str
    line: int | None
    field: str | None
    message: str

    @classmethod
    def of(cls, error: ArticleError) -> InvalidArticle:
        """Describe an article error."""
        return cls(str(error.path), error.line, error.field, str(error))


@dataclass(frozen=True)
class ReindexResult:
    """What a successful reindex published."""

    version: str
    articles: int
    chunks: int
    embedded: int
    reused: int
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    invalid: tuple[InvalidArticle, ...]
    seconds: float

    @classmethod
    def of(cls, report: BuildReport) -> ReindexResult:
        """Sum up a build's report."""
        return cls(report.version, report.articles, report.chunks, report.embedded,
                   report.reused, report.added, report.changed, report.removed,
                   tuple(InvalidArticle.of(e) for e in report.errors), round(report.seconds, 3))


@dataclass(frozen=True)
class ReindexJob:
    """One reindex: who asked, its state, times (ISO 8601, UTC), progress and outcome.

    ``done`` of ``total`` articles have their texts embedded (or reused from the build
    before); ``total`` is 0 until the articles have been read.
    """

    id: str
    state: str
    requested_by: str
    strict: bool
    requested: str
    started: str | None = None
    finished: str | None = None
    updated: str | None = None
    done: int = 0
    total: int = 0
    result: ReindexResult | None = None
    error: str | None = None

    @property
    def active(self) -> bool:
        """Return whether the job is queued or running."""
        return self.state in ACTIVE

    def to_json(self) -> dict[str, Any]:
        """Return the job as JSON-ready data (the API's answer)."""
        data = dataclasses.asdict(self)
        data["progress"] = {"done": data.pop("done"), "total": data.pop("total")}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReindexJob:
        """Read a job written by :meth:`to_json`."""
        values = {k: v for k, v in data.items() if k not in ("progress", "result")}
        progress = data.get("progress") or {}
        result = data.get("result")
        if result is not None:
            lists = {name: tuple(result[name]) for name in ("added", "changed", "removed")}
            invalid = tuple(InvalidArticle(**entry) for entry in result["invalid"])
            result = ReindexResult(**{**result, **lists, "invalid": invalid})
        return cls(**values, done=int(progress.get("done", 0)),
                   total=int(progress.get("total", 0)), result=result)


@dataclass(frozen=True)
class ReindexPlan:
    """What to build and how: the folders and the build settings."""

    articles_dir: Path
    index_dir: Path
    languages: tuple[str, ...] = ("de", "en")
    chunk_tokens: int = 256
    exact_limit: int = 50_000
    keep_builds: int = 3
    batch_size: int = 32


def now_iso() -> str:
    """Return the time now as ISO 8601 in UTC, to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class ReindexBoard:
    """The reindex jobs of one index folder: start one, read the latest."""

    def __init__(self, index_dir: Path) -> None:
        """Use the state file and lock in ``index_dir`` (created when a job starts)."""
        self.index_dir = Path(index_dir)
        self.state_path = self.index_dir / STATE_FILE
        self.lock_path = self.index_dir / LOCK_FILE
        self._write_lock = threading.Lock()

    def latest(self) -> ReindexJob | None:
        """Return the latest job (None before the first); a dead running job as failed."""
        job = self._read()
        if job is None or not job.active or not self._lock_is_free():
            return job
        job = self._read()  # it may have finished while the lock was looked at
        if job is not None and job.active:
            job = dataclasses.replace(job, state="failed", finished=now_iso(),
                                      updated=now_iso(), error=DIED)
            self._write(job)
        return job

    def start(self, plan: ReindexPlan, requested_by: str, strict: bool,
              embedder: Callable[[], Embedder]) -> ReindexJob:
        """Start a reindex in a background thread and return it, queued.

        ``embedder`` is called in the thread (loading a model may take a while). Raises
        ReindexRunningError when another reindex is queued or running.
        """
        lock = self._take_lock()
        job = ReindexJob(id=dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-"
                         + secrets.token_hex(3), state="queued", requested_by=requested_by,
                         strict=strict, requested=now_iso(), updated=now_iso())
        try:
            self._write(job)
            thread = threading.Thread(target=self._run, args=(job, plan, embedder, lock),
                                      name=f"kbsearch-reindex-{job.id}", daemon=True)
            thread.start()
        except BaseException:
            lock.close()
            raise
        return job

    def _take_lock(self) -> IO[str]:
        """Take the reindex lock without waiting; raise ReindexRunningError if it is held."""
        self.index_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(START_ATTEMPTS):
            handle = open(self.lock_path, "a+")  # held by the job's thread
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                handle.close()
            running = self._read()
            if running is not None and running.active:
                raise ReindexRunningError(running)
            time.sleep(START_PAUSE_SECONDS)
        raise IndexBuildError(f"the reindex lock {self.lock_path} is held by another "
                              "process; try again in a moment")

    def _lock_is_free(self) -> bool:
        """Return whether no process holds the reindex lock (it is taken and let go)."""
        try:
            handle = open(self.lock_path, "a+")
        except OSError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(handle, fcntl.LOCK_UN)
            return True

    def _read(self) -> ReindexJob | None:
        """Return the job of the state file; None without one or when it cannot be read."""
        try:
            return ReindexJob.from_json(json.loads(self.state_path.read_text("utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.error("reindex state %s cannot be read: %s", self.state_path, exc)
            return None

    def _write(self, job: ReindexJob) -> None:
        """Replace the state file with a job, atomically."""
        with self._write_lock:
            atomic_write_text(self.state_path, json.dumps(job.to_json(), indent=2) + "\n")

    def _run(self, job: ReindexJob, plan: ReindexPlan, embedder: Callable[[], Embedder],
             lock: IO[str]) -> None:
        """Run a job to its end, recording its progress; let go of the lock last."""
        current = [dataclasses.replace(job, state="running", started=now_iso(),
                                       updated=now_iso())]

        def record(**changes: Any) -> None:
            current[0] = dataclasses.replace(current[0], updated=now_iso(), **changes)
            self._write(current[0])

        try:
            self._write(current[0])
            result = build(plan, job.strict, embedder, lambda total: record(total=total),
                           lambda done: record(done=done))
            record(state="succeeded", finished=now_iso(), done=result.articles, result=result)
        except KbsearchError as exc:
            record(state="failed", finished=now_iso(), error=str(exc))
        except Exception:
            log.exception("reindex %s failed", job.id)
            record(state="failed", finished=now_iso(), error=UNEXPECTED)
        finally:
            lock.close()  # closing the file lets go of the lock


def build(plan: ReindexPlan, strict: bool, embedder: Callable[[], Embedder],
          on_total: Callable[[int], None], on_done: Callable[[int], None]) -> ReindexResult:
    """Build the articles into a new index version and publish it; return what it did.

    The articles are read (and ``on_total`` told their number) before ``embedder`` is
    called, which may load the model. Raises IndexBuildError with strict and invalid
    articles, or without a valid article.
    """
    current = current_articles(plan.index_dir)
    loaded = load_articles(plan.articles_dir, plan.languages, current.by_file())
    if strict and loaded.errors:
        raise IndexBuildError(
            f"{len(loaded.errors)} invalid article(s), nothing built (strict):\n"
            + "\n".join(f"  {e}" for e in loaded.errors))
    if not loaded.articles:
        detail = "".join(f"\n  {e}" for e in loaded.errors)
        raise IndexBuildError(f"no valid article in {plan.articles_dir}; nothing built{detail}")
    articles = list(loaded.articles)
    on_total(len(articles))
    report = build_from_articles(articles, plan.index_dir, embedder(),
                                 chunk_tokens=plan.chunk_tokens, exact_limit=plan.exact_limit,
                                 errors=loaded.errors, keep_builds=plan.keep_builds,
                                 current=current, embed_batch=plan.batch_size, on_done=on_done)
    return ReindexResult.of(report)
