"""A read-only Whoosh storage whose files stay memory-mapped, shared between processes.

Whoosh maps a segment's compound file, but then opens each file inside it (postings, term
index, length columns, stored fields) as ``BufferFile(memoryview)``, which copies the
bytes into an ``io.BytesIO``: every process that opened a build held a private copy of
its whole keyword index (about 830 MB at a million articles, 90 MB at 100,000). Here each
file, and each file inside a compound file, is its own read-only ``mmap``: its pages are
read from the page cache, shared by every gunicorn worker, and only touched pages are
resident. Positions inside a file count from its own start, as Whoosh expects.
"""

from __future__ import annotations

import mmap
import os
from typing import Any

from whoosh.filedb.filestore import FileStorage
from whoosh.filedb.structfile import BufferFile, StructFile


class MappedFile(StructFile):
    """Bytes ``start`` to ``start + length`` of a file, memory-mapped read-only.

    A mapping starts at a multiple of the allocation granularity, so the file's first byte
    lies ``shift`` bytes into it; ``seek``, ``tell`` and ``get`` translate. The file is
    open only while it is mapped: the mapping keeps what it needs.
    """

    def __init__(self, path: str, start: int, length: int, name: str | None = None) -> None:
        aligned = start - start % mmap.ALLOCATIONGRANULARITY
        self._shift = start - aligned
        with open(path, "rb") as source:
            mapped = mmap.mmap(source.fileno(), self._shift + length,
                               access=mmap.ACCESS_READ, offset=aligned)
        super().__init__(mapped, name=name)
        mapped.seek(self._shift)
        self._path = path
        self._start = start

    def seek(self, where: int, whence: int = 0) -> Any:
        """Move to ``where`` from the file's start (0), the position (1) or its end (2)."""
        return self.file.seek(where + self._shift if whence == 0 else where, whence)

    def tell(self) -> int:
        """Return the position from the file's start."""
        return int(self.file.tell()) - self._shift

    def get(self, position: int, length: int) -> bytes:
        """Return ``length`` bytes from ``position`` (without moving the position)."""
        start = self._shift + position
        return bytes(self.file[start:start + length])

    def subset(self, position: int, length: int, name: str | None = None) -> StructFile:
        """Return the file inside this one at ``position`` (a compound file's part)."""
        return _mapped(self._path, self._start + position, length, name or self._name)


class MappedStorage(FileStorage):
    """A read-only :class:`FileStorage` of memory-mapped files (see the module).

    It says it does not map, so that Whoosh opens compound files through their own
    ``subset``, which maps each part instead of copying it.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path, supports_mmap=False, readonly=True)

    def open_file(self, name: str, **kwargs: Any) -> StructFile:
        """Open a file of the storage, mapped."""
        path = self._fpath(name)
        return _mapped(path, 0, os.path.getsize(path), name)


def _mapped(path: str, start: int, length: int, name: str | None) -> StructFile:
    """Return a mapped file, or an empty buffer for an empty one (which cannot be mapped)."""
    if length == 0:
        return BufferFile(b"", name=name)
    return MappedFile(path, start, length, name)
