"""Article texts of an opened build, read from its ``articles.jsonl`` when asked for.

An opened build keeps every article's metadata in memory (searches filter and rank by
it) but not its Markdown: a search reads the texts of the few articles it shows, for
their snippets, and the article page its one. The texts of every article took about half
of what an opened build holds (465 of 996 MB at 100,000 articles, so some 5 GB a worker
at a million). Each line's place in the file is noted while the build is opened; the file
stays open, so a build pruned while a worker still searches it is read to the end.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kbsearch.content.articles import Article


class ArticleBodies:
    """The Markdown of a build's articles, by position, read from ``articles.jsonl``."""

    def __init__(self, path: Path, offsets: np.ndarray) -> None:
        """Read from the file at ``path``; line ``i`` spans ``offsets[i]:offsets[i + 1]``."""
        self.path = path
        self.offsets = offsets
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._close = weakref.finalize(self, os.close, self._fd)  # when dropped unclosed

    def body(self, position: int) -> str:
        """Return the Markdown of the article at a position."""
        if not self._close.alive:
            raise ValueError(f"{self.path} was closed")
        start, end = int(self.offsets[position]), int(self.offsets[position + 1])
        line = os.pread(self._fd, end - start, start)
        return str(json.loads(line)["body"])

    def close(self) -> None:
        """Close the file; reading a body afterwards raises ValueError."""
        self._close()


def read_articles(path: Path) -> tuple[tuple[Article, ...], ArticleBodies]:
    """Return a build's articles without their bodies (``body`` empty), and the bodies."""
    articles: list[Article] = []
    offsets = [0]
    for record, end in _records(path):
        articles.append(Article.from_metadata(record, ""))
        offsets.append(end)
    return tuple(articles), ArticleBodies(path, np.array(offsets, dtype=np.int64))


def _records(path: Path) -> Iterator[tuple[dict, int]]:
    """Yield each line's JSON object and the offset where the line ends (blank lines are
    left out: their bytes are counted into the next line, whose JSON ignores them)."""
    end = 0
    with path.open("rb") as handle:
        for line in handle:
            end += len(line)
            if line.strip():
                yield json.loads(line), end
