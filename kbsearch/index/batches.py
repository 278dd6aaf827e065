"""Writing a build's articles, chunks and vectors a batch of articles at a time.

A build takes its articles in order, a batch at a time: it cuts each article into chunks
(or keeps its rows of the current build, :func:`~kbsearch.index.previous.chunks_of`),
embeds the batch's new chunk texts and titles, and appends the batch's records to
``articles.jsonl`` and ``chunks.jsonl`` and its vectors to ``chunk_vectors.npy`` and
``title_vectors.npy``. Only one batch's chunks and vectors are held at a time, so a build's
memory no longer grows with every chunk text and vector of the knowledge base (at a
million articles those alone passed 20 GB). A batch ends when it has ``embed_batch`` new
chunk texts or ``ARTICLE_BATCH`` articles; after each, the articles done so far are
reported (an article is done when its chunks are embedded or taken from the current build).

The vector files are written as NumPy ``.npy`` files whose header, written last, gives the
row count: its length does not depend on the count (the format pads it to 128 bytes), so
the rows go straight to their place and are never copied.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np
from tqdm import tqdm

from kbsearch.content.articles import Article
from kbsearch.content.chunking import Chunk
from kbsearch.index.embedding import Embedder
from kbsearch.index.previous import (
    KeptChunks,
    PreviousBuild,
    chunk_vectors_of,
    chunks_of,
    embed_missing,
    text_key,
    title_text,
)

EMBED_BATCH = 1024  # new chunk texts a batch embeds at most (the command line's builds)
ARTICLE_BATCH = 4096  # articles a batch takes at most (most of them unchanged)
ROWS_DTYPE = np.dtype("<f4")


def npy_header(rows: int, dimension: int) -> bytes:
    """Return the header of a ``.npy`` file of float32 rows (128 bytes for any count)."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {
        "descr": np.lib.format.dtype_to_descr(ROWS_DTYPE), "fortran_order": False,
        "shape": (rows, dimension)})
    return out.getvalue()


class RowsFile:
    """A ``.npy`` file of float32 rows written a block at a time; its header comes last."""

    def __init__(self, path: Path, dimension: int) -> None:
        """Open ``path`` for writing rows of ``dimension`` floats."""
        self.path, self.dimension, self.rows = path, dimension, 0
        self._reserved = len(npy_header(0, dimension))
        self._handle: IO[bytes] = path.open("wb")
        self._handle.write(b"\0" * self._reserved)

    def append(self, vectors: np.ndarray) -> None:
        """Append rows (converted to contiguous little-endian float32)."""
        block = np.ascontiguousarray(vectors, dtype=ROWS_DTYPE).reshape(-1, self.dimension)
        self._handle.write(block.tobytes())
        self.rows += len(block)

    def finish(self) -> np.ndarray:
        """Write the header and close the file; return its rows, memory-mapped."""
        header = npy_header(self.rows, self.dimension)
        if len(header) != self._reserved:  # the format pads every header alike
            raise ValueError(f"{self.path}: .npy header of {len(header)} bytes, "
                             f"{self._reserved} reserved")
        self._handle.seek(0)
        self._handle.write(header)
        self._handle.close()
        return np.load(self.path, mmap_mode="r")

    def __enter__(self) -> RowsFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._handle.close()


@dataclass(frozen=True)
class WrittenArticles:
    """What the batches wrote: the chunk vectors (memory-mapped), each chunk row's row in
    the current build (-1 for a new chunk) and how many chunk texts were embedded."""

    chunk_vectors: np.ndarray
    source: np.ndarray
    embedded: int


def write_articles(
    staging: Path,
    articles: Sequence[Article],
    previous: PreviousBuild,
    embedder: Embedder,
    budget: int,
    embed_batch: int = EMBED_BATCH,
    on_done: Callable[[int], None] | None = None,
    progress: bool = False,
) -> WrittenArticles:
    """Write the records and the chunk and title vectors of the articles, batch by batch.

    ``on_done(n)`` is told how many articles are done before a batch's texts are embedded
    and after each batch; ``progress`` shows a bar of the articles on stderr.
    """
    dimension = embedder.dimension
    sources: list[np.ndarray] = []
    embedded = done = 0
    with (RowsFile(staging / "chunk_vectors.npy", dimension) as chunk_rows,
          RowsFile(staging / "title_vectors.npy", dimension) as title_rows,
          (staging / "articles.jsonl").open("wb") as article_lines,
          (staging / "chunks.jsonl").open("wb") as chunk_lines,
          tqdm(total=len(articles), unit=" articles", disable=not progress) as bar):

        def flush(batch: list[tuple[Article, KeptChunks | tuple[Chunk, ...]]],
                  fresh: int) -> None:
            nonlocal embedded, done
            if on_done is not None and fresh:
                on_done(done + sum(isinstance(chunks, KeptChunks) for _, chunks in batch))
            vectors, count, source = chunk_vectors_of(
                [chunks for _, chunks in batch], previous, embedder.embed_passages, dimension)
            titles, _ = embed_missing([title_text(a.title, a.body) for a, _ in batch],
                                      previous.titles.get, embedder.embed_passages, dimension)
            chunk_rows.append(vectors)
            title_rows.append(titles)
            write_lines(article_lines, chunk_lines, batch, previous)
            sources.append(source)
            embedded += count
            done += len(batch)
            bar.update(len(batch))
            if on_done is not None:
                on_done(done)

        batch: list[tuple[Article, KeptChunks | tuple[Chunk, ...]]] = []
        fresh = 0
        for article in articles:
            chunks = chunks_of(previous, article, budget, embedder.count_tokens)
            batch.append((article, chunks))
            fresh += len(chunks) if isinstance(chunks, tuple) else 0
            if fresh >= embed_batch or len(batch) >= ARTICLE_BATCH:
                flush(batch, fresh)
                batch, fresh = [], 0
        if batch:
            flush(batch, fresh)
        title_rows.finish()
        vectors = chunk_rows.finish()
    source = np.concatenate(sources) if sources else np.zeros(0, dtype=np.int64)
    return WrittenArticles(vectors, source, embedded)


def write_lines(
    article_lines: IO[bytes], chunk_lines: IO[bytes],
    batch: Sequence[tuple[Article, KeptChunks | tuple[Chunk, ...]]], previous: PreviousBuild,
) -> None:
    """Append a batch's lines to articles.jsonl and chunks.jsonl.

    The current build's lines of kept chunks, and of articles taken from it unparsed, are
    copied as they are.
    """
    for article, chunks in batch:
        line = previous.article_line(article)
        if line is None:
            record = {**article.to_metadata(), "body": article.body}
            line = json_line(record)
        article_lines.write(line)
        if isinstance(chunks, KeptChunks):
            chunk_lines.write(previous.kept_lines(chunks))
            continue
        for chunk in chunks:
            record = {
                "article_id": chunk.article_id,
                "ordinal": chunk.ordinal,
                "heading": chunk.heading,
                "text_key": text_key(chunk.text),
                "text": chunk.text,
            }
            chunk_lines.write(json_line(record))


def json_line(record: dict) -> bytes:
    """Return a record as a JSON line, UTF-8 (non-ASCII characters as they are)."""
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
