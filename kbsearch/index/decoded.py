"""Long postings lists stored decoded beside each Whoosh segment, memory-mapped.

Whoosh stores a term's postings in pickled blocks of up to 128; reading one block costs
about 20 µs of Python whatever :mod:`kbsearch.index.postings` does with it, so a query whose
terms occur in most of a million articles spent about 150 ms reading blocks (keyword
search: 151 ms p50; the same queries over postings already decoded: 24 ms). A build
therefore writes, for each segment, the postings of every term with at least
``MIN_POSTINGS`` of them in it as flat arrays (document numbers as ``uint32``, term
frequencies as ``uint8`` where they all fit, else ``float32``) into
``<segment id>.kbpost``. A search maps the file (its pages shared by every worker through
the page cache) and takes a term's postings as array views; shorter postings, and every
term of a segment without the file (a build made before it existed), are read from
Whoosh's blocks as before.

A segment never changes once written (deletions are kept apart from it, and applied when
postings are read), so neither does its file. Its name follows Whoosh's pattern for a
segment's files: Whoosh deletes it with the segment when a merge makes the segment
obsolete, and a reindex's hard-linked copy of an index carries it along.

The file: the arrays, each starting at a multiple of 8 bytes, then a JSON directory
(``{"version", "segment", "documents", "terms": [[field, term as hex, document frequency,
weight dtype, offset of the document numbers, offset of the weights, count], ...]}``), then
a trailer of the directory's offset and length (two little-endian ``uint64``) and
``MAGIC``. A file that does not read as one is ignored (the blocks are read instead), and
said so in the log.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
from whoosh.fields import Schema
from whoosh.reading import IndexReader, SegmentReader

from kbsearch.index.mapped import MappedStorage
from kbsearch.index.postings import segment_postings

MIN_POSTINGS = 1024  # a term with fewer postings in a segment (8 blocks) is read from Whoosh
SUFFIX = ".kbpost"
MAGIC = b"KBPOST01"
VERSION = 1
_TRAILER = struct.Struct("<QQ8s")
_ALIGN = 8

log = logging.getLogger(__name__)


def segment_file(folder: Path, reader: IndexReader) -> Path | None:
    """Return the path of a segment reader's decoded postings, None for another reader."""
    segment = getattr(reader, "_segment", None)
    if type(reader) is not SegmentReader or segment is None:
        return None
    return folder / f"{segment.segment_id()}{SUFFIX}"


def write_decoded_postings(folder: Path, schema: Schema) -> list[Path]:
    """Write the decoded postings of each segment of the Whoosh index in ``folder`` that has
    no file yet (a segment's file never changes); return the files written.

    The index is opened with ``schema``; the terms of its scored fields are stored. A file
    is written under a name starting with a dot (which Whoosh leaves alone) and renamed
    into place when complete.
    """
    fields = [name for name, field in schema.items() if field.scorable]
    written: list[Path] = []
    ix = MappedStorage(str(folder)).open_index(schema=schema)
    with ix.reader() as reader:
        for leaf, _ in reader.leaf_readers():
            path = segment_file(folder, leaf)
            if path is None or path.exists():
                continue
            partial = path.with_name(f".{path.name}.partial")
            try:
                with open(partial, "wb") as out:
                    _write_segment(out, leaf, fields)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
            written.append(path)
    return written


def _write_segment(out: BinaryIO, leaf: IndexReader, fields: list[str]) -> None:
    """Write one segment's long postings, their directory and the trailer to ``out``."""
    terms: list[list[object]] = []
    known = set(leaf.indexed_field_names())
    for field in fields:
        if field not in known:
            continue
        for term, info in leaf.iter_field(field):
            frequency = info.doc_frequency()
            if frequency < MIN_POSTINGS:
                continue
            docnums, weights = segment_postings(leaf, field, term)  # deleted ones too
            whole = weights.astype(np.uint8)
            small = bool(np.all(whole == weights))
            stored = whole if small else weights.astype(np.float32)
            ids_at = _append(out, docnums.astype(np.uint32))
            weights_at = _append(out, stored)
            terms.append([field, term.hex(), frequency, stored.dtype.str, ids_at, weights_at,
                          len(docnums)])
    directory = json.dumps({"version": VERSION, "segment": leaf._segment.segment_id(),
                            "documents": leaf.doc_count_all(), "terms": terms}).encode()
    at = out.tell()
    out.write(directory)
    out.write(_TRAILER.pack(at, len(directory), MAGIC))


def _append(out: BinaryIO, values: np.ndarray) -> int:
    """Write an array at the next multiple of 8 bytes; return where it starts."""
    out.write(b"\0" * (-out.tell() % _ALIGN))
    at = out.tell()
    out.write(values.tobytes())
    return at


class DecodedPostings:
    """One segment's decoded postings, mapped read-only."""

    def __init__(self, path: Path, segment: str, documents: int) -> None:
        """Map the file at ``path``, which must hold ``segment``'s postings of ``documents``
        documents; raise ValueError (naming the file and what is wrong) if it does not."""
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            if size < _TRAILER.size:
                raise ValueError(f"{path}: {size} bytes, shorter than its trailer")
            self._map = mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ)
        at, length, magic = _TRAILER.unpack(self._map[size - _TRAILER.size:])
        if magic != MAGIC or at + length > size - _TRAILER.size:
            raise ValueError(f"{path}: not a decoded postings file (trailer)")
        try:
            directory = json.loads(self._map[at:at + length])
        except ValueError as error:
            raise ValueError(f"{path}: directory is not JSON ({error})") from None
        if directory.get("version") != VERSION:
            raise ValueError(f"{path}: version {directory.get('version')!r}, not {VERSION}")
        if directory.get("segment") != segment or directory.get("documents") != documents:
            raise ValueError(f"{path}: written for segment {directory.get('segment')!r} of "
                             f"{directory.get('documents')!r} documents, not {segment!r} "
                             f"of {documents}")
        self._terms: dict[tuple[str, bytes], tuple[int, np.dtype, int, int, int]] = {}
        for field, term, frequency, dtype, ids_at, weights_at, count in directory["terms"]:
            kind = np.dtype(dtype)
            if (kind not in (np.dtype(np.uint8), np.dtype(np.float32))
                    or min(ids_at, weights_at, count) < 0
                    or ids_at + 4 * count > at or weights_at + kind.itemsize * count > at):
                raise ValueError(f"{path}: term {field}:{term} lies outside the file")
            self._terms[(field, bytes.fromhex(term))] = (frequency, kind, ids_at, weights_at,
                                                         count)

    def __len__(self) -> int:
        return len(self._terms)

    def close(self) -> None:
        """Unmap the file (left to the garbage collector while a search still reads it)."""
        try:
            self._map.close()
        except BufferError:
            pass

    def read(self, field: str, term: bytes) -> tuple[np.ndarray, np.ndarray, int] | None:
        """Return a term's document numbers in the segment (deleted ones included), its
        frequency in each (as float64) and its document frequency; None if not stored."""
        entry = self._terms.get((field, term))
        if entry is None:
            return None
        frequency, kind, ids_at, weights_at, count = entry
        docnums = np.frombuffer(self._map, dtype=np.uint32, count=count, offset=ids_at)
        weights = np.frombuffer(self._map, dtype=kind, count=count, offset=weights_at)
        return docnums.astype(np.int64), weights.astype(np.float64), frequency


def open_decoded(folder: Path, leaf: IndexReader) -> DecodedPostings | None:
    """Return a segment's decoded postings, or None where it has no usable file (logged)."""
    path = segment_file(folder, leaf)
    if path is None or not path.exists():
        return None
    try:
        return DecodedPostings(path, leaf._segment.segment_id(), leaf.doc_count_all())
    except (OSError, ValueError) as error:
        log.warning("decoded postings not used, read from the index instead: %s", error)
        return None
