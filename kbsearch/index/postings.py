"""A term's postings read from Whoosh a block at a time, as NumPy arrays.

Whoosh's matcher interface gives one posting per call (``id()``, ``weight()``, ``next()``
through a MultiMatcher and a FilterMatcher for each segment). Reading a term that
100,000 articles contain that way took most of a search at 100k articles. Whoosh's own
postings format (``whoosh3``) stores them in blocks of up to 128, which are read here
whole. This relies on the format's matcher (``W3LeafMatcher``) and its block fields, so
any other matcher (a future format, inlined postings) is read the slow, public way; a test
compares both ways on every term of an index with several segments and deletions.

Every document's length in a field (what BM25 normalises by) is read the same way: as
the column of one byte per document that whoosh3 stores per segment, where Whoosh's
``doc_field_length`` answers one document per call (3.5 s a field at a million articles,
on the first search that needed it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from whoosh.codec.whoosh3 import LENGTHS_COLUMN, W3LeafMatcher, W3PerDocReader, _lenfield
from whoosh.columns import NumericColumn
from whoosh.matching import Matcher
from whoosh.matching.wrappers import FilterMatcher
from whoosh.reading import IndexReader, SegmentReader, TermNotFound
from whoosh.util.numeric import byte_to_length

Check = Callable[[], None]  # raises when the search has to stop (a deadline)
# a stored length byte → the length Whoosh scores with; 0 (no terms in the field) → 1
LENGTHS = np.array([1] + [byte_to_length(b) for b in range(1, 256)], dtype=np.int64)


class SegmentPostings(Protocol):
    """A segment's postings stored apart from Whoosh's blocks (:mod:`kbsearch.index.decoded`)."""

    def read(self, field: str, term: bytes) -> tuple[np.ndarray, np.ndarray, int] | None:
        """Return a term's document numbers in the segment (deleted ones included), weights
        and document frequency; None for a term not stored there."""

    def close(self) -> None:
        """Release the stored postings' file."""


SegmentOpener = Callable[[IndexReader], "SegmentPostings | None"]


@dataclass(frozen=True)
class TermPostings:
    """A term's documents in a field (ascending, deleted ones left out), its weight
    (frequency) in each, and its document frequency as Whoosh counts it for idf (every
    segment's stored count, deleted documents included)."""

    docnums: np.ndarray
    weights: np.ndarray
    doc_frequency: int


class PostingsReader:
    """Reads terms' postings from an open Whoosh reader, segment by segment.

    The segments and their deleted documents are read once: a searcher's reader never
    changes. ``stored`` opens a segment's postings stored apart from Whoosh's blocks, where
    it has them (:mod:`kbsearch.index.decoded`); a term found there is not read from Whoosh.
    """

    def __init__(self, reader: IndexReader, stored: SegmentOpener | None = None) -> None:
        self._leaves: list[tuple[IndexReader, int, np.ndarray | None,
                                 SegmentPostings | None]] = []
        for leaf, offset in reader.leaf_readers():
            deleted = None
            if leaf.has_deletions():
                deleted = np.zeros(leaf.doc_count_all(), dtype=bool)
                deleted[list(leaf.deleted_docs_set)] = True
            self._leaves.append((leaf, offset, deleted, stored(leaf) if stored else None))

    def close(self) -> None:
        """Release the files of the segments' stored postings."""
        for *_, stored in self._leaves:
            if stored is not None:
                stored.close()

    @property
    def stored_segments(self) -> int:
        """Return how many segments have their long postings stored apart."""
        return sum(1 for *_, stored in self._leaves if stored is not None)

    def read(self, field: str, term: bytes, check: Check | None = None) -> TermPostings:
        """Return a term's postings in a field; none for a missing term.

        Each segment's term dictionary is asked once for the term's statistics (the
        document frequency Whoosh's idf adds up) and once for its postings, unless the
        segment's stored postings hold the term. ``check`` is
        called before each block of postings is read, so that a long read can be stopped.
        """
        ids: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        doc_frequency = 0
        for leaf, offset, deleted, stored in self._leaves:
            found = stored.read(field, term) if stored is not None else None
            if found is not None:
                if check is not None:
                    check()
                leaf_ids, leaf_weights, leaf_frequency = found
                doc_frequency += leaf_frequency
            else:
                try:
                    doc_frequency += leaf.term_info(field, term).doc_frequency()
                except TermNotFound:
                    continue
                leaf_ids, leaf_weights = segment_postings(leaf, field, term, check)
            if deleted is not None:
                kept = ~deleted[leaf_ids]
                leaf_ids, leaf_weights = leaf_ids[kept], leaf_weights[kept]
            ids.append(leaf_ids + offset)
            weights.append(leaf_weights)
        if not ids:
            return TermPostings(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64), 0)
        return TermPostings(np.concatenate(ids), np.concatenate(weights), doc_frequency)


def field_lengths(reader: IndexReader, field: str) -> np.ndarray:
    """Return every document's length in ``field`` as Whoosh's BM25F scores it, by document
    number (1 for a document without terms in the field, as for a deleted one).

    A whoosh3 segment's length column is read whole; any other segment one document at a
    time through ``doc_field_length``.
    """
    lengths = np.ones(reader.doc_count_all(), dtype=np.int64)
    for leaf, offset in reader.leaf_readers():
        count = leaf.doc_count_all()
        perdoc = getattr(leaf, "_perdoc", None)
        if type(leaf) is SegmentReader and isinstance(perdoc, W3PerDocReader):
            column = perdoc._cached_reader(_lenfield(field), LENGTHS_COLUMN)
            if column is None:  # no document of the segment has the field
                continue
            if type(column) is NumericColumn.Reader and column._fixedlen == 1:
                stored = np.zeros(count, dtype=np.uint8)
                size = min(column._count, count)  # documents past the column: no length
                stored[:size] = np.frombuffer(column._dbfile.get(column._basepos, size),
                                              dtype=np.uint8)
                lengths[offset:offset + count] = LENGTHS[stored]
                continue
        for docnum in range(count):
            lengths[offset + docnum] = leaf.doc_field_length(docnum, field, 1) or 1
    return lengths


def segment_postings(leaf: IndexReader, field: str, term: bytes, check: Check | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Return a term's document numbers and weights in one segment, its deleted documents
    included (Whoosh's matcher would skip them one by one; callers drop them as arrays)."""
    matcher = leaf.postings(field, term)
    if isinstance(matcher, FilterMatcher):
        matcher = matcher.child
        matcher.reset()
    return _read_matcher(matcher, check)


def _read_matcher(matcher: Matcher, check: Check | None) -> tuple[np.ndarray, np.ndarray]:
    """Return a segment matcher's document numbers and weights, from its first posting."""
    if type(matcher) is W3LeafMatcher and not matcher._byteids:
        return _read_blocks(matcher, check)
    return read_one_by_one(matcher, check)


def _read_blocks(matcher: W3LeafMatcher, check: Check | None) -> tuple[np.ndarray, np.ndarray]:
    """Read a whoosh3 matcher's blocks as they are stored: per block, the differences of
    its document numbers (the first one whole) and the weights, or one weight for all
    (None: 1.0; a float: that float as float32, as Whoosh's ``_read_weights`` makes them).
    """
    deltas: list[int] = []
    weights: list[float] = []
    lengths: list[int] = []
    while matcher.is_active():
        if check is not None:
            check()
        matcher._read_data()
        block_ids, block_weights = matcher._data[0], matcher._data[1]
        count = matcher._blocklength
        deltas.extend(block_ids)
        if block_weights is None:
            weights.extend([1.0] * count)
        elif isinstance(block_weights, float):
            weights.extend([float(np.float32(block_weights))] * count)
        else:
            weights.extend(block_weights)
        lengths.append(count)
        matcher._next_block()
    if not lengths:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    sums = np.cumsum(np.array(deltas, dtype=np.int64))
    ends = np.cumsum(lengths)
    before = np.concatenate(([0], sums[ends[:-1] - 1]))  # each block counts from zero
    return sums - np.repeat(before, lengths), np.array(weights, dtype=np.float64)


def read_one_by_one(matcher: Matcher, check: Check | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Read any matcher through its public interface, one posting per call."""
    ids: list[int] = []
    weights: list[float] = []
    while matcher.is_active():
        if check is not None and len(ids) % 128 == 0:
            check()
        ids.append(matcher.id())
        weights.append(matcher.weight())
        matcher.next()
    return np.array(ids, dtype=np.int64), np.array(weights, dtype=np.float64)
