"""A build writes its articles a batch at a time: same files, bounded embedding calls."""

import dataclasses
import filecmp
import json
import shutil
from collections import Counter

import numpy as np
import pytest

from kbsearch.content.articles import load_articles
from kbsearch.index.batches import RowsFile, npy_header
from kbsearch.index.builds import BUILDS, build_from_articles, build_index, current_version

from .conftest import ARTICLES
from .test_indexer import CountingEmbedder

FILES = ("articles.jsonl", "chunks.jsonl", "chunk_vectors.npy", "title_vectors.npy",
         "question_vectors.npy")


@pytest.mark.parametrize("rows", [0, 1, 7])
def test_a_rows_file_is_the_npy_file_of_its_rows(tmp_path, rows):
    vectors = np.random.default_rng(rows).normal(size=(rows, 4)).astype(np.float64)
    with RowsFile(tmp_path / "v.npy", 4) as out:
        out.append(vectors[:3])
        out.append(vectors[3:])
        loaded = out.finish()
    assert loaded.dtype == np.float32 and loaded.shape == (rows, 4)
    assert np.array_equal(loaded, vectors.astype(np.float32))
    np.save(tmp_path / "same.npy", vectors.astype(np.float32))
    assert filecmp.cmp(tmp_path / "v.npy", tmp_path / "same.npy", shallow=False)


def test_the_npy_header_has_one_length_for_every_row_count():
    assert {len(npy_header(rows, 384)) for rows in (0, 1, 10**6, 10**15)} == {128}


@pytest.fixture
def kb_copy(tmp_path):
    shutil.copytree(ARTICLES, tmp_path / "kb")
    return tmp_path / "kb"


def build_of(index_dir):
    return index_dir / BUILDS / str(current_version(index_dir))


def test_small_batches_write_the_files_one_batch_writes(tmp_path, fake_embedder):
    one = build_index(ARTICLES, tmp_path / "one", fake_embedder)
    counting = CountingEmbedder(fake_embedder)
    calls: list[int] = []
    inner = counting.embed_passages
    counting.embed_passages = lambda texts, progress=False: calls.append(len(texts)) or inner(
        texts)
    articles = list(load_articles(ARTICLES).articles)
    done: list[int] = []
    many = build_from_articles(articles, tmp_path / "many", counting, embed_batch=3,
                               on_done=done.append)
    assert (many.articles, many.chunks, many.embedded) == (one.articles, one.chunks,
                                                          one.embedded)
    for name in FILES:
        assert filecmp.cmp(build_of(tmp_path / "one") / name, build_of(tmp_path / "many") / name,
                           shallow=False), name
    lines = (build_of(tmp_path / "one") / "chunks.jsonl").read_text("utf-8").splitlines()
    most = max(Counter(json.loads(line)["article_id"] for line in lines).values())
    # a batch: fewer than 3 new texts, then the article that reached 3 (or its 3 titles)
    assert len(calls) > 10 and max(calls) <= 2 + most
    assert done == sorted(done) and done[-1] == len(articles)


def test_a_reindex_in_batches_reuses_what_is_unchanged(tmp_path, kb_copy, fake_embedder):
    index_dir = tmp_path / "index"
    build_from_articles(list(load_articles(kb_copy).articles), index_dir, fake_embedder,
                        embed_batch=2)
    first = build_of(index_dir)
    changed = kb_copy / "energie" / "zaehlerstand-melden.md"
    changed.write_text(changed.read_text("utf-8") + "\nNeu: Ablesung per Foto.\n", "utf-8")
    counting = CountingEmbedder(fake_embedder)
    report = build_from_articles(list(load_articles(kb_copy).articles), index_dir, counting,
                                 embed_batch=2)
    assert report.changed == ("zaehlerstand-melden",) and 1 <= report.embedded <= 3
    assert all("Foto" in text or "Zähler" in text for text in counting.passages)
    fresh = build_index(kb_copy, tmp_path / "fresh", fake_embedder)
    for name in ("chunk_vectors.npy", "title_vectors.npy", "chunks.jsonl"):
        assert filecmp.cmp(build_of(index_dir) / name, build_of(tmp_path / "fresh") / name,
                           shallow=False), name
    assert fresh.chunks == report.chunks and first != build_of(index_dir)


def test_a_text_several_articles_share_is_embedded_once(tmp_path, fake_embedder):
    # three answers to one question (stackfaq's shape), and one article twice
    articles = [dataclasses.replace(a, id=f"{a.id}-{n}", path=f"{a.id}-{n}.md",
                                    title="Wie melde ich meinen Zählerstand?",
                                    body=f"Antwort {n}: {a.body}" if n else a.body)
                for a in list(load_articles(ARTICLES).articles)[:1] for n in range(3)]
    articles.append(dataclasses.replace(articles[0], id="kopie", path="kopie.md"))
    counting = CountingEmbedder(fake_embedder)
    report = build_from_articles(articles, tmp_path / "index", counting)
    texts = Counter(counting.passages)
    assert set(texts.values()) == {1}  # nothing embedded twice
    assert texts["Wie melde ich meinen Zählerstand?"] == 1
    build = build_of(tmp_path / "index")
    titles = np.load(build / "title_vectors.npy")
    assert np.array_equal(titles[0], titles[1]) and np.array_equal(titles[0], titles[2])
    assert np.array_equal(titles[0], fake_embedder.embed_passages(
        ["Wie melde ich meinen Zählerstand?"])[0])
    chunks = [json.loads(line) for line in (build / "chunks.jsonl").read_text().splitlines()]
    vectors = np.load(build / "chunk_vectors.npy")
    first = [i for i, c in enumerate(chunks) if c["article_id"] == articles[0].id]
    copy = [i for i, c in enumerate(chunks) if c["article_id"] == "kopie"]
    assert len(first) == len(copy) > 0
    assert np.array_equal(vectors[first], vectors[copy])  # the same text, the same vector
    distinct = {c["text"] for c in chunks}
    assert len(distinct) < len(chunks)  # the copy's, and the answers' later paragraphs
    assert report.embedded == len(distinct)
    assert report.reused == report.chunks - len(distinct)  # the repeats count as reused
