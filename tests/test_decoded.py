"""Long postings stored decoded beside each segment read as Whoosh's blocks do, and a build
writes them, keeps them through a reindex and lets Whoosh drop them with their segment."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from whoosh import index as whoosh_index

from kbsearch.content.analysis import Lexicon
from kbsearch.content.articles import load_articles
from kbsearch.content.synonyms import NO_RULES
from kbsearch.index import decoded
from kbsearch.index.decoded import SUFFIX, DecodedPostings, open_decoded, write_decoded_postings
from kbsearch.index.keyword import (
    KeywordIndex,
    build_keyword_index,
    make_schema,
    update_keyword_index,
)
from kbsearch.index.postings import PostingsReader

ARTICLES = Path(__file__).resolve().parent.parent / "articles"
LEXICON = Lexicon(frozenset())


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.glob(f"*{SUFFIX}")}


@pytest.fixture
def stored(segmented: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the three-segment index with the postings of every term found in at
    least 20 documents of a segment stored decoded."""
    folder = tmp_path / "keyword"
    shutil.copytree(segmented, folder)
    for old in folder.glob(f"*{SUFFIX}"):
        old.unlink()
    monkeypatch.setattr(decoded, "MIN_POSTINGS", 20)
    written = write_decoded_postings(folder, make_schema(LEXICON))
    assert len(written) == 3  # one per segment
    assert write_decoded_postings(folder, make_schema(LEXICON)) == []  # never rewritten
    return folder


def test_every_term_reads_as_from_whooshs_blocks(stored: Path) -> None:
    ix = whoosh_index.open_dir(str(stored), schema=make_schema(LEXICON))
    with ix.searcher() as searcher:
        reader = searcher.reader()
        leaves = [leaf for leaf, _ in reader.leaf_readers()]
        kept = [open_decoded(stored, leaf) for leaf in leaves]
        assert all(k is not None and len(k) > 0 for k in kept)
        with_files = PostingsReader(reader, partial(open_decoded, stored))
        assert with_files.stored_segments == 3
        blocks = PostingsReader(reader)
        terms = [(f, t) for f, t in reader.all_terms() if f != "id"]
        stored_terms = 0
        for field, term in terms:
            ours, theirs = with_files.read(field, term), blocks.read(field, term)
            assert ours.docnums.tolist() == theirs.docnums.tolist(), (field, term)
            assert ours.weights.tolist() == theirs.weights.tolist(), (field, term)
            assert ours.doc_frequency == theirs.doc_frequency, (field, term)
            stored_terms += any(k is not None and k.read(field, term) is not None
                                for k in kept)
        # long terms came from the files, short ones from the blocks
        assert 0 < stored_terms < len(terms)


def test_frequencies_too_large_for_a_byte_are_kept_exactly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    articles = list(load_articles(ARTICLES).articles)[:3]
    articles[0] = dataclasses.replace(articles[0], body="Zähler " * 300)
    monkeypatch.setattr(decoded, "MIN_POSTINGS", 1)
    build_keyword_index(tmp_path, articles, LEXICON)
    [path] = tmp_path.glob(f"*{SUFFIX}")
    ix = whoosh_index.open_dir(str(tmp_path), schema=make_schema(LEXICON))
    with ix.searcher() as searcher:
        leaf = searcher.reader()
        file = DecodedPostings(path, leaf._segment.segment_id(), leaf.doc_count_all())
        lang = articles[0].language
        [[term]] = KeywordIndex(tmp_path).terms("Zähler", [lang])[lang]
        entry = file.read(f"body_{lang}", term.encode())
        assert file._terms[(f"body_{lang}", term.encode())][1] == np.float32
        assert entry is not None
        docnums, weights, frequency = entry
        assert docnums.tolist() == [0] and weights.tolist() == [300.0] and frequency == 1


def test_a_damaged_file_is_logged_and_the_blocks_are_read(
        stored: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected = KeywordIndex(stored).search("Zählerstand Router Rechnung", 20)
    paths = sorted(stored.glob(f"*{SUFFIX}"))
    paths[0].write_bytes(paths[0].read_bytes()[:-5])  # cut short
    other = paths[1].read_bytes()
    paths[2].write_bytes(other)  # another segment's file
    with caplog.at_level(logging.WARNING, logger="kbsearch.index.decoded"):
        index = KeywordIndex(stored)
    assert index._postings_reader.stored_segments == 1
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert f"{paths[0]}: not a decoded postings file" in messages
    assert f"{paths[2]}: written for segment" in messages
    assert index.search("Zählerstand Router Rechnung", 20) == expected
    [kept] = [stored for *_, stored in index._postings_reader._leaves if stored is not None]
    index.close()
    assert kept._map.closed  # unmapped with the index


def test_a_reindex_keeps_the_files_and_whoosh_drops_them_with_their_segment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoded, "MIN_POSTINGS", 5)
    articles = list(load_articles(ARTICLES).articles)
    first = tmp_path / "first"
    build_keyword_index(first, articles, LEXICON)
    assert len(_files(first)) == 1
    changed = [dataclasses.replace(a, body=a.body + "\n\nZählerstand") for a in articles[:2]]
    second = tmp_path / "second"
    update_keyword_index(first, second, [a.id for a in changed], changed, LEXICON,
                         NO_RULES)
    assert _files(first) < _files(second)  # the old segment's file linked, a new one added
    assert _files(first) == {p.name for p in first.glob(f"*{SUFFIX}")}  # first untouched
    ix = whoosh_index.open_dir(str(second), schema=make_schema(LEXICON))
    segments = {s.segment_id() for s in ix._segments()}
    assert {name.removesuffix(SUFFIX) for name in _files(second)} == segments
    # merged into one segment: Whoosh deletes the files of the segments it replaced
    writer = ix.writer()
    writer.commit(optimize=True)
    assert not (_files(second) & {f"{s}{SUFFIX}" for s in segments})
    assert write_decoded_postings(second, make_schema(LEXICON))
    searched = KeywordIndex(second)
    assert searched._postings_reader.stored_segments == 1
    ids, _ = searched.search("Zählerstand", 100)
    for path in second.glob(f"*{SUFFIX}"):
        path.unlink()
    assert KeywordIndex(second).search("Zählerstand", 100)[0] == ids
    assert {a.id for a in changed} <= set(ids)


def test_a_failed_write_leaves_no_file(segmented: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "keyword"
    shutil.copytree(segmented, folder)
    before = sorted(p.name for p in folder.iterdir())

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(decoded, "_write_segment", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_decoded_postings(folder, make_schema(LEXICON))
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing half-written
