"""WAL checkpoints on a thread of their own, so that no request waits for one.

In WAL mode SQLite appends each commit to the ``-wal`` file and, by default, the commit
that takes the file past 1,000 pages copies them back into the database and syncs both
files to disk (a checkpoint). With ``synchronous = NORMAL`` that is the only sync there
is, and it lands on whichever request happened to commit: the search log, written on
every search, made about one search in 70 wait 20–50 ms for it at 10k articles (its
p99 38.6 ms against a median of 1.2 ms).

A :class:`BackgroundCheckpointer` takes that work off the writers: its database's
connection checkpoints by itself only far later (``FALLBACK_PAGES``, in case this thread
falls behind or stops), and a daemon thread runs a PASSIVE checkpoint every ``interval``
seconds on a connection of its own. PASSIVE copies what no reader still needs and never
waits for a lock, and SQLite runs it while writers go on appending, so commits take about
a millisecond again. A checkpoint with nothing new to copy does nothing, so an idle store
costs nothing.

Threads do not survive ``fork``: a gunicorn worker forked from a master that wrote starts
its own on its first write (:meth:`BackgroundCheckpointer.ensure_running`). The thread
opens the file only to checkpoint it, never creates it, and ends when its database is
closed or garbage-collected, or when the file is gone.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from pathlib import Path

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0
FALLBACK_PAGES = 16_000  # the writers' own checkpoint: about 64 MB of WAL, if this thread stops


class BackgroundCheckpointer:
    """Checkpoints one SQLite file's WAL every ``interval`` seconds on a daemon thread."""

    def __init__(self, path: Path, owner: object, interval: float = CHECKPOINT_INTERVAL_S
                 ) -> None:
        """Describe the thread for the file at ``path``; it stops when ``owner`` is gone.

        Nothing starts here: :meth:`ensure_running` starts the thread in the process that
        writes.
        """
        self.path = Path(path)
        self.interval = interval
        self._owner = weakref.ref(owner)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    @property
    def running(self) -> bool:
        """Whether this process's thread is alive."""
        thread = self._thread
        return thread is not None and self._pid == os.getpid() and thread.is_alive()

    def ensure_running(self) -> None:
        """Start this process's thread unless it runs already or the checkpointer stopped.

        Called on every write, so it costs a look at the thread when it runs.
        """
        if self.running or self._stop.is_set():
            return
        with self._lock:
            if self.running or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=_checkpoint_loop,
                args=(self.path, self._owner, self._stop, self.interval),
                name=f"kbsearch-checkpoint-{self.path.name}", daemon=True)
            self._pid = os.getpid()
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (waiting up to ``timeout`` seconds); it does not start again."""
        self._stop.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            thread.join(timeout)


def checkpoint(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """Run a PASSIVE checkpoint: (1 if it could not finish, WAL frames, frames copied)."""
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(busy), int(frames), int(copied)


def _checkpoint_loop(path: Path, owner: weakref.ref[object], stop: threading.Event,
                     interval: float) -> None:
    """Checkpoint ``path`` every ``interval`` seconds until stopped or the owner is gone.

    A failure is logged once and tried again at the next interval; a file that no longer
    exists ends the thread.
    """
    warned = False
    while not stop.wait(interval):
        if owner() is None or not path.exists():
            return
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True,
                                   timeout=1.0)
        except sqlite3.Error:
            return  # the file is gone (or no longer a database): nothing to checkpoint
        try:
            checkpoint(conn)
            warned = False
        except sqlite3.Error as exc:
            if not warned:
                log.warning("cannot checkpoint %s (tried again every %g s): %s",
                            path, interval, exc)
                warned = True
        finally:
            conn.close()
