"""Postings read a block at a time equal those read one by one through Whoosh's matchers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from whoosh import index as whoosh_index

from kbsearch.content.analysis import Lexicon
from kbsearch.errors import SearchTimeoutError
from kbsearch.index import postings
from kbsearch.index.deadline import Deadline
from kbsearch.index.keyword import make_schema
from kbsearch.index.postings import PostingsReader, read_one_by_one


@pytest.mark.parametrize("blocks", [True, False], ids=["blocks", "other-matchers"])
def test_every_term_reads_the_same_as_one_by_one(segmented: Path, blocks: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Every term of every field, in every segment: the same documents (deleted ones left
    out) and weights as Whoosh's own matcher gives, read a block at a time from whoosh3's
    matcher and one by one from any other kind."""
    if not blocks:  # a matcher of another kind than whoosh3's (another codec, say)
        monkeypatch.setattr(postings, "W3LeafMatcher", type("Other", (), {}))
    ix = whoosh_index.open_dir(str(segmented), schema=make_schema(Lexicon(frozenset())))
    with ix.searcher() as searcher:
        reader = searcher.reader()
        leaves = list(reader.leaf_readers())
        assert len(leaves) == 3 and sum(leaf.has_deletions() for leaf, _ in leaves) == 2
        terms = [(f, t) for f, t in reader.all_terms() if f != "id"]
        assert len(terms) > 1000
        postings_reader = PostingsReader(reader)
        for field, term in terms:
            read = postings_reader.read(field, term)
            matcher = reader.postings(field, term)  # Whoosh's own: deletions filtered
            expected_ids, expected_weights = read_one_by_one(matcher)
            assert read.docnums.tolist() == expected_ids.tolist(), (field, term)
            assert np.all(np.diff(read.docnums) > 0)  # ascending, each document once
            assert read.weights.tolist() == expected_weights.tolist(), (field, term)
            # what Whoosh's idf counts: every segment's documents, deleted ones too
            assert read.doc_frequency == reader.doc_frequency(field, term), (field, term)
        # some postings fill several blocks of 128 in one segment
        assert max(leaf.doc_frequency(*ft) for leaf, _ in leaves for ft in terms) > 128
        missing = postings_reader.read("body_de", b"no-such-term")
        assert missing.docnums.size == 0 and missing.doc_frequency == 0


def test_a_long_read_is_stopped_between_blocks(segmented: Path) -> None:
    ix = whoosh_index.open_dir(str(segmented), schema=make_schema(Lexicon(frozenset())))
    with ix.searcher() as searcher:
        reader = searcher.reader()
        field, term = max(((f, t) for f, t in reader.all_terms() if f != "id"),
                          key=lambda ft: reader.doc_frequency(*ft))
        checks = []
        postings_reader = PostingsReader(reader)
        postings_reader.read(field, term, lambda: checks.append(1))
        assert len(checks) >= 3  # a block at least in each segment
        expired = Deadline(limit=1.0, expires=0.0, clock=lambda: 1.0)
        with pytest.raises(SearchTimeoutError):
            postings_reader.read(field, term, lambda: expired.check("keyword"))


@pytest.mark.parametrize("columns", [True, False], ids=["length-columns", "one-by-one"])
def test_field_lengths_are_whoosh_s_for_every_document(segmented: Path, columns: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Every scored field's length of every document, in every segment, read as whoosh3's
    length columns (or, for another kind of segment, one by one) is what Whoosh's
    ``doc_field_length`` gives, 1 where a document has no terms in the field."""
    if not columns:
        monkeypatch.setattr(postings, "W3PerDocReader", type("Other", (), {}))
    ix = whoosh_index.open_dir(str(segmented), schema=make_schema(Lexicon(frozenset())))
    with ix.searcher() as searcher:
        reader = searcher.reader()
        fields = [name for name in ix.schema.names() if name != "id"]
        assert len(fields) == 6
        without = 0
        for field in fields:
            lengths = postings.field_lengths(reader, field)
            expected = [reader.doc_field_length(d, field, 1) or 1
                        for d in range(reader.doc_count_all())]
            assert lengths.tolist() == expected, field
            without += sum(1 for d in range(reader.doc_count_all())
                           if not reader.doc_field_length(d, field))
        assert without > 0  # documents without a field (English articles' German fields)
        assert max(postings.field_lengths(reader, "body_de")) > 100
