"""Small file helpers shared by the index and the weights store."""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from array import array
from collections.abc import Iterator
from pathlib import Path


def _temp_prefix(path: Path) -> str:
    """Return the name prefix of the temporary files :func:`atomic_write_text` writes."""
    return f".{path.name}-"


def remove_temp_files(path: Path) -> None:
    """Remove temporary files that writes of ``path`` left behind when their process died.

    Call it only while nothing else writes ``path`` (under the lock its writers hold).
    """
    for temp in path.parent.glob(_temp_prefix(path) + "*"):
        temp.unlink(missing_ok=True)


def remove_tree(folder: Path, hidden_prefix: str) -> None:
    """Delete a folder so that a process killed meanwhile leaves nothing under its name.

    The folder is first renamed to ``hidden_prefix`` + its name (atomically), then deleted;
    a folder missing already is no error. Whoever owns the folder's parent removes what a
    killed process left under the hidden name.
    """
    doomed = folder.with_name(hidden_prefix + folder.name)
    try:
        folder.rename(doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that readers see the old or the new content, never a mix.

    The text goes to a temporary file in the same folder, is flushed to disk, and replaces
    ``path`` with ``os.replace`` (an atomic rename on POSIX).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LineFile:
    """A file of lines kept open, read back a line or a run of lines at a time by number.

    Where each non-blank line starts and ends is noted once (:meth:`scan`, which yields
    the lines as it goes); the lines stay on disk. The file is read with ``pread`` from a
    descriptor opened when the file is scanned, so threads may read at once and a file
    deleted meanwhile (a build pruned while a worker still reads it) is read to the end.
    The descriptor is closed by :meth:`close`, or when the object is dropped.
    """

    def __init__(self, path: Path) -> None:
        """Open ``path``; no line is known until :meth:`scan` has run."""
        self.path = path
        self.starts = array("q")  # 8 bytes a line (a list took 36 at a million lines)
        self.ends = array("q")
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._close = weakref.finalize(self, os.close, self._fd)

    def scan(self) -> Iterator[bytes]:
        """Note where each non-blank line is while yielding it (its line end kept)."""
        offset = 0
        with os.fdopen(os.dup(self._fd), "rb") as handle:
            handle.seek(0)
            for line in handle:
                if line.strip():
                    self.starts.append(offset)
                    self.ends.append(offset + len(line))
                    yield line
                offset += len(line)

    def __len__(self) -> int:
        return len(self.starts)

    def read(self, first: int, stop: int | None = None) -> bytes:
        """Return line ``first`` (or lines ``first`` to ``stop`` - 1), line ends kept."""
        if not self._close.alive:
            raise ValueError(f"{self.path} was closed")
        last = first if stop is None else stop - 1
        if last < first:
            return b""
        start, end = self.starts[first], self.ends[last]
        return os.pread(self._fd, end - start, start)

    def close(self) -> None:
        """Close the file; reading afterwards raises ValueError."""
        self._close()
