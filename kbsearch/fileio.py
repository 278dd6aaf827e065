"""Small file helpers shared by the index and the weights store."""

from __future__ import annotations

import os
import shutil
import tempfile
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
