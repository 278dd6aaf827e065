"""What a new build takes from the current one: vectors by text, and its keyword index.

An unchanged chunk, title or editors' question keeps the vector it has in the current
build (found by the SHA-256 of its text), so only new text is embedded. An unchanged
article keeps its chunks, their vectors and their records as rows of the current build,
copied without being cut, looked up or encoded again. The keyword index
of the current build is updated in place of a fresh one when few articles changed (see
:func:`kbsearch.index.keyword.update_keyword_index`); this module says what the current
build holds, the build decides.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbsearch import __version__
from kbsearch.content.articles import Article
from kbsearch.content.chunking import Chunk, chunk_article
from kbsearch.fileio import LineFile
from kbsearch.index.dense import CENTROIDS_FILE, LISTS_FILE


def text_key(text: str) -> str:
    """Return the key a text's vector is kept under: the SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def title_text(title: str, body: str) -> str:
    """Return the text embedded as an article's title: the title, or the body's opening."""
    return title if title.strip() else " ".join(body.split()[:24])


def read_jsonl(path: Path) -> Iterator[dict]:
    """Yield the JSON objects of a JSON-lines file, skipping blank lines."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


CHUNK_LINE_START = '{"article_id": "'
TEXT_KEY_MARK = '"text_key": "'


def chunk_line_keys(line: str) -> tuple[str, str]:
    """Return the article id and text key of a chunks.jsonl line without decoding all of it.

    The build writes each line as ``json.dumps`` of article_id, ordinal, heading, text_key
    and text, in that order: the id (a slug, nothing escaped) opens the line, and
    ``"text_key": "`` cannot occur inside a JSON string (``json.dumps`` escapes every
    quote in one), so the 64 hex digits after its first occurrence are the key. Decoding
    the chunk texts of every line took a quarter of a reindex at 10k articles. A line of
    any other shape is decoded whole.
    """
    if line.startswith(CHUNK_LINE_START):
        end = line.find('"', len(CHUNK_LINE_START))
        at = line.find(TEXT_KEY_MARK) + len(TEXT_KEY_MARK)
        key = line[at:at + 64]
        if end > 0 and at >= len(TEXT_KEY_MARK) and line[at + 64:at + 65] == '"':
            return line[len(CHUNK_LINE_START):end], key
    record = json.loads(line)
    return str(record["article_id"]), str(record["text_key"])


@dataclass(frozen=True)
class CurrentArticles:
    """The current build's articles, parsed, and its articles.jsonl, whose lines they are.

    Read before a new build parses the articles folder: an unchanged file (same path and
    bytes) is taken from here instead of being parsed again, and its line is copied into
    the new build as it is (read back from ``lines``, not kept in memory). Empty without a
    current build, or when another kbsearch version (whose checks may differ) or build
    format wrote it.
    """

    folder: Path | None = None
    articles: tuple[Article, ...] = ()
    lines: LineFile | None = None

    def by_file(self) -> dict[tuple[str, str], Article]:
        """Return the articles by path (relative to the articles folder) and content hash."""
        return {(a.path, a.content_hash): a for a in self.articles}


def read_current_articles(folder: Path | None, build_format: int) -> CurrentArticles:
    """Read the articles of the build in ``folder`` (see :class:`CurrentArticles`)."""
    if folder is None:
        return CurrentArticles()
    try:
        manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
        if (manifest.get("format"), manifest.get("kbsearch_version")) != (build_format,
                                                                           __version__):
            return CurrentArticles()
        lines = LineFile(folder / "articles.jsonl")
        articles = tuple(Article.from_metadata(record, record["body"])
                         for record in map(json.loads, lines.scan()))
    except (OSError, ValueError, KeyError, TypeError):  # pruned meanwhile, or another format
        return CurrentArticles()
    return CurrentArticles(folder, articles, lines)


@dataclass(frozen=True)
class KeptChunks:
    """An unchanged article's chunks: rows ``start`` to ``end`` of the current build."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


class PreviousBuild:
    """The current build as the next one reuses it (empty when there is none).

    ``hashes`` are its articles' content hashes and ``synonyms`` its synonyms file's
    digest, whatever its model; ``chunk_vector``, ``titles`` and ``questions`` give the
    vectors of texts it embedded, only when it was made with the same model and build
    format. ``keyword`` is its keyword index folder when the same kbsearch version wrote
    it in the same format, and ``keyword_updates`` how many updates that index has had
    since it was written anew. ``centroids`` and ``lists`` are its IVF index's centroids
    and each chunk's list, where it has one. ``kept`` says where each article's chunks
    are (same model and kbsearch version only), cut to ``chunk_budget`` tokens, and
    ``chunk_lines`` are their records: an unchanged article is not cut, embedded or
    written out again.
    """

    def __init__(self, folder: Path | None, model: dict[str, object], build_format: int,
                 current: CurrentArticles | None = None) -> None:
        """Read what can be reused from the build in ``folder`` (None: no build yet).

        ``current`` holds that build's articles when they were read before (they are used
        only when they are of this very build).
        """
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self.centroids: np.ndarray | None = None
        self.lists: np.ndarray | None = None
        self.chunk_rows: dict[str, int] = {}
        self.chunk_lines: LineFile | None = None
        self.titles: dict[str, np.ndarray] = {}
        self.questions: dict[str, np.ndarray] = {}
        self.hashes: dict[str, str] = {}
        self.synonyms: str | None = None
        self.keyword: Path | None = None
        self.keyword_updates = 0
        self.chunk_budget = 0
        self.kept: dict[str, tuple[str, KeptChunks]] = {}
        self._lines: dict[str, tuple[Article, int]] = {}
        self._article_lines: LineFile | None = None
        if folder is None:
            return
        if current is not None and current.folder == folder and current.lines is not None:
            self._lines = {a.id: (a, line) for line, a in enumerate(current.articles)}
            self._article_lines = current.lines
        manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
        self.hashes = dict(manifest.get("content_hashes", {}))
        self.synonyms = manifest.get("synonyms", {}).get("sha256")
        if manifest.get("format") != build_format:
            return
        same_release = manifest.get("kbsearch_version") == __version__
        if same_release:  # another release may analyse words or cut chunks otherwise
            self.keyword = folder / "keyword"
            self.keyword_updates = int(manifest.get("keyword_index", {}).get("updates", 0))
        if manifest["model"] != model:
            return
        self.vectors = np.load(folder / "chunk_vectors.npy", mmap_mode="r")
        if (folder / LISTS_FILE).exists():  # an IVF index: its centroids and lists
            self.centroids = np.load(folder / CENTROIDS_FILE)
            self.lists = np.load(folder / LISTS_FILE, mmap_mode="r")
        self.chunk_lines = LineFile(folder / "chunks.jsonl")
        pairs = [chunk_line_keys(line.decode("utf-8")) for line in self.chunk_lines.scan()]
        ids = [article_id for article_id, _ in pairs]
        self.chunk_rows = {key: row for row, (_, key) in enumerate(pairs)}
        if same_release:
            self.chunk_budget = int(manifest.get("parameters", {}).get("chunk_tokens", 0))
            self.kept = _blocks(ids, self.hashes)
        titles = np.load(folder / "title_vectors.npy")
        questions = np.load(folder / "question_vectors.npy")
        if self._lines:
            records = [(a.title, a.body, a.questions) for a, _ in self._lines.values()]
        else:
            records = [(r["title"], r["body"], r["questions"])
                       for r in read_jsonl(folder / "articles.jsonl")]
        for row, (title, body, _) in enumerate(records):
            self.titles[text_key(title_text(title, body))] = titles[row]
        texts = [q for _, _, article_questions in records for q in article_questions]
        for row, text in enumerate(texts):
            self.questions[text_key(text)] = questions[row]

    def article_line(self, article: Article) -> bytes | None:
        """Return the current build's articles.jsonl line of an article taken from it
        unparsed (the very object), or None."""
        kept = self._lines.get(article.id)
        if kept is None or kept[0] is not article or self._article_lines is None:
            return None
        return self._article_lines.read(kept[1])

    def kept_lines(self, chunks: KeptChunks) -> bytes:
        """Return the chunks.jsonl lines of an unchanged article's chunks."""
        if self.chunk_lines is None:
            raise ValueError("the current build has no chunk records to keep")
        return self.chunk_lines.read(chunks.start, chunks.end)

    def lists_of(self, source: np.ndarray) -> np.ndarray | None:
        """Return the IVF list of each new row whose row here is ``source`` (-1: a new
        chunk, which gets -1 too), or None without IVF lists."""
        if self.lists is None:
            return None
        return np.where(source >= 0, np.asarray(self.lists)[np.maximum(source, 0)], -1)

    def chunk_vector(self, key: str) -> np.ndarray | None:
        """Return the vector of a chunk text (by its key), or None when it has none."""
        row = self.chunk_rows.get(key)
        return None if row is None else np.asarray(self.vectors[row])


def _blocks(ids: Sequence[str], hashes: dict[str, str]) -> dict[str, tuple[str, KeptChunks]]:
    """Return each article's content hash and rows, from the article id of every row.

    A build writes an article's chunks one after another; an article whose rows are not
    (which no build writes) is left out, and so cut again.
    """
    blocks: dict[str, tuple[str, KeptChunks]] = {}
    split: set[str] = set()
    start = 0
    for article_id, rows in itertools.groupby(ids):
        end = start + sum(1 for _ in rows)
        if article_id in blocks:
            split.add(article_id)
        blocks[article_id] = (hashes.get(article_id, ""), KeptChunks(start, end))
        start = end
    for article_id in split:
        del blocks[article_id]
    return blocks


def chunks_of(
    previous: PreviousBuild, article: Article, budget: int, count_tokens: Callable[[str], int]
) -> KeptChunks | tuple[Chunk, ...]:
    """Return an article's chunks: where the previous build has them when its file is
    unchanged and it was cut to the same budget by the same model, or cut now."""
    kept = previous.kept.get(article.id)
    if kept is not None and previous.chunk_budget == budget and kept[0] == article.content_hash:
        return kept[1]
    return tuple(chunk_article(article.id, article.title, article.body, count_tokens, budget))


def embed_missing(
    texts: Sequence[str],
    cached: Callable[[str], np.ndarray | None],
    embed: Callable[[Sequence[str]], np.ndarray],
    dimension: int,
) -> tuple[np.ndarray, int]:
    """Return vectors for texts and how many were embedded: only the texts ``cached`` has
    no vector for (by text key), each distinct one once (titles several articles share, a
    paragraph repeated in many)."""
    found = [cached(text_key(t)) for t in texts]
    missing = [i for i, vector in enumerate(found) if vector is None]
    out = np.zeros((len(texts), dimension), dtype=np.float32)
    distinct = list(dict.fromkeys(texts[i] for i in missing))
    if distinct:
        fresh = dict(zip(distinct, embed(distinct), strict=True))
        for i in missing:
            out[i] = fresh[texts[i]]
    for i, vector in enumerate(found):
        if vector is not None:
            out[i] = vector
    return out, len(distinct)


def chunk_vectors_of(
    chunks: Sequence[KeptChunks | tuple[Chunk, ...]], previous: PreviousBuild,
    embed: Callable[[Sequence[str]], np.ndarray], dimension: int,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Return the vectors of all chunks, article after article, how many were embedded,
    and each row's row in the current build (-1 for a new chunk).

    Kept chunks are copied from the current build's rows; new chunks take the vector of
    the same text where the current build has one, and are embedded otherwise.
    """
    new = [c for article_chunks in chunks if isinstance(article_chunks, tuple)
           for c in article_chunks]
    fresh, embedded = embed_missing([c.text for c in new], previous.chunk_vector, embed,
                                    dimension)
    total = sum(len(c) for c in chunks)
    out = np.zeros((total, dimension), dtype=np.float32)
    source = np.full(total, -1, dtype=np.int64)
    row = taken = 0
    for article_chunks in chunks:
        count = len(article_chunks)
        if isinstance(article_chunks, KeptChunks):
            out[row:row + count] = previous.vectors[article_chunks.start:article_chunks.end]
            source[row:row + count] = np.arange(article_chunks.start, article_chunks.end)
        else:
            out[row:row + count] = fresh[taken:taken + count]
            taken += count
        row += count
    return out, embedded, source
