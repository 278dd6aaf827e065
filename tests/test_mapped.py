"""Whoosh files memory-mapped, not copied: the same bytes, positions and index contents."""

from __future__ import annotations

import io
import mmap
import pickle
import shutil
from pathlib import Path

import numpy as np
from whoosh.filedb.filestore import FileStorage
from whoosh.filedb.structfile import StructFile

from kbsearch.content.analysis import Lexicon
from kbsearch.index.keyword import KeywordIndex, build_keyword_index, make_schema
from kbsearch.index.mapped import MappedFile, MappedStorage
from kbsearch.index.postings import PostingsReader, field_lengths

GRAIN = mmap.ALLOCATIONGRANULARITY


def test_a_part_of_a_file_reads_as_the_same_bytes_would(tmp_path: Path) -> None:
    """A part at an offset that is no multiple of the mapping granularity: positions count
    from the part's start, reads stop at its end, as over the part's bytes in memory."""
    rng = np.random.default_rng(3)
    head = rng.bytes(GRAIN + 1234)
    record = pickle.dumps({"terms": ["zählerstand", "router"], "n": 7})
    part = b"line one\nline two\n" + record + rng.bytes(3 * GRAIN)
    path = tmp_path / "compound"
    path.write_bytes(head + part + b"after the part")
    whole = MappedStorage(str(tmp_path)).open_file("compound")
    assert isinstance(whole, MappedFile)
    mapped = whole.subset(len(head), len(part), name="part")
    expected = StructFile(io.BytesIO(part))
    assert mapped.readline() == expected.readline() == b"line one\n"
    assert mapped.tell() == expected.tell() == 9
    assert mapped.read(9) == expected.read(9)
    assert mapped.read_pickle() == expected.read_pickle() == {"terms": ["zählerstand", "router"],
                                                             "n": 7}
    assert mapped.tell() == expected.tell()
    for position, length in ((0, 5), (17, 40), (len(part) - 3, 10), (GRAIN - 2, 9)):
        assert mapped.get(position, length) == expected.get(position, length)
        if position + 4 <= len(part):
            assert mapped.get_int(position) == expected.get_int(position)
    mapped.seek(-4, 2)
    assert mapped.read() == part[-4:]  # the part's end, not the file's
    mapped.seek(5)
    mapped.seek(3, 1)
    assert mapped.tell() == 8 and mapped.read(4) == part[8:12]
    mapped.close()
    whole.close()
    (tmp_path / "empty").write_bytes(b"")
    assert MappedStorage(str(tmp_path)).open_file("empty").read() == b""


def test_an_index_reads_the_same_mapped_as_through_whoosh_s_storage(segmented: Path) -> None:
    """Every term's postings, every field's lengths and every stored document of an index
    with three segments and deletions: the same through both storages."""
    schema = make_schema(Lexicon(frozenset()))
    own = FileStorage(str(segmented), readonly=True).open_index(schema=schema)
    mapped = MappedStorage(str(segmented)).open_index(schema=schema)
    with own.searcher() as expected, mapped.searcher() as found:
        reader, mapped_reader = expected.reader(), found.reader()
        assert len(list(mapped_reader.leaf_readers())) == 3
        terms = [(f, t) for f, t in reader.all_terms() if f != "id"]
        assert terms == [(f, t) for f, t in mapped_reader.all_terms() if f != "id"]
        ours, theirs = PostingsReader(mapped_reader), PostingsReader(reader)
        for field, term in terms:
            a, b = ours.read(field, term), theirs.read(field, term)
            assert a.docnums.tolist() == b.docnums.tolist(), (field, term)
            assert a.weights.tolist() == b.weights.tolist() and a.doc_frequency == b.doc_frequency
        for field in (name for name in schema.names() if name != "id"):
            assert field_lengths(mapped_reader, field).tolist() == field_lengths(
                reader, field).tolist()
        assert list(mapped_reader.iter_docs()) == list(reader.iter_docs())


def test_an_open_keyword_index_keeps_answering_after_its_folder_is_removed(
        tmp_path: Path) -> None:
    """A build folder pruned while a worker still searches it: the mapped files stay."""
    from kbsearch.content.articles import load_articles

    from .conftest import ARTICLES

    folder = tmp_path / "keyword"
    build_keyword_index(folder, list(load_articles(ARTICLES).articles), Lexicon(frozenset()))
    index = KeywordIndex(folder)
    before = index.search("Zählerstand melden", 5)
    shutil.rmtree(folder)
    assert index.search("Zählerstand melden", 5) == before
    assert before[0]
    index.search("Router blinkt rot", 5)  # terms not read before: from the removed files
    index.close()
