"""Article texts of an opened build, read from its ``articles.jsonl`` when asked for.

An opened build keeps every article's metadata in memory (searches filter and rank by
it) but not its Markdown: a search reads the texts of the few articles it shows, for
their snippets, and the article page its one. The texts of every article took about half
of what an opened build holds (465 of 996 MB at 100,000 articles, so some 5 GB a worker
at a million). Each line's place in the file is noted while the build is opened; the file
stays open, so a build pruned while a worker still searches it is read to the end
(:class:`kbsearch.fileio.LineFile`).
"""

from __future__ import annotations

import json
from pathlib import Path

from kbsearch.content.articles import Article
from kbsearch.fileio import LineFile


class ArticleBodies:
    """The Markdown of a build's articles, by position, read from ``articles.jsonl``."""

    def __init__(self, lines: LineFile) -> None:
        """Read from the scanned lines of a build's ``articles.jsonl``."""
        self.lines = lines

    def body(self, position: int) -> str:
        """Return the Markdown of the article at a position."""
        return str(json.loads(self.lines.read(position))["body"])

    def close(self) -> None:
        """Close the file; reading a body afterwards raises ValueError."""
        self.lines.close()


def read_articles(path: Path) -> tuple[tuple[Article, ...], ArticleBodies]:
    """Return a build's articles without their bodies (``body`` empty), and the bodies."""
    lines = LineFile(path)
    articles = tuple(Article.from_metadata(json.loads(line), "") for line in lines.scan())
    return articles, ArticleBodies(lines)
