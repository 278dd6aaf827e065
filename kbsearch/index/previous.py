"""What a new build takes from the current one: vectors by text, and its keyword index.

An unchanged chunk, title or editors' question keeps the vector it has in the current
build (found by the SHA-256 of its text), so only new text is embedded. The keyword index
of the current build is updated in place of a fresh one when few articles changed (see
:func:`kbsearch.index.keyword.update_keyword_index`); this module says what the current
build holds, the build decides.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from kbsearch import __version__
from kbsearch.content.articles import Article
from kbsearch.content.chunking import Chunk, chunk_article


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


class PreviousBuild:
    """The current build as the next one reuses it (empty when there is none).

    ``hashes`` are its articles' content hashes and ``synonyms`` its synonyms file's
    digest, whatever its model; ``chunks``, ``titles`` and ``questions`` map text keys to
    vectors only when it was made with the same model and build format. ``keyword``
    is its keyword index folder when the same kbsearch version wrote it in the same
    format, and ``keyword_updates`` how many updates that index has had since it was
    written anew. ``article_chunks`` holds each article's content hash and chunks (same
    model and kbsearch version only), cut to ``chunk_budget`` tokens: an unchanged
    article is not cut again.
    """

    def __init__(self, folder: Path | None, model: dict[str, object], build_format: int) -> None:
        """Read what can be reused from the build in ``folder`` (None: no build yet)."""
        self.chunks: dict[str, np.ndarray] = {}
        self.titles: dict[str, np.ndarray] = {}
        self.questions: dict[str, np.ndarray] = {}
        self.hashes: dict[str, str] = {}
        self.synonyms: str | None = None
        self.keyword: Path | None = None
        self.keyword_updates = 0
        self.chunk_budget = 0
        self.article_chunks: dict[str, tuple[str, tuple[Chunk, ...]]] = {}
        if folder is None:
            return
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
        vectors = np.load(folder / "chunk_vectors.npy")
        by_article: dict[str, list[Chunk]] = {}
        for row, line in enumerate(read_jsonl(folder / "chunks.jsonl")):
            self.chunks[line["text_key"]] = vectors[row]
            by_article.setdefault(line["article_id"], []).append(
                Chunk(line["article_id"], line["ordinal"], line["heading"], line["text"]))
        if same_release:
            self.chunk_budget = int(manifest.get("parameters", {}).get("chunk_tokens", 0))
            self.article_chunks = {
                article_id: (self.hashes.get(article_id, ""), tuple(chunks))
                for article_id, chunks in by_article.items()
            }
        titles = np.load(folder / "title_vectors.npy")
        records = list(read_jsonl(folder / "articles.jsonl"))
        for row, line in enumerate(records):
            self.titles[text_key(title_text(line["title"], line["body"]))] = titles[row]
        questions = np.load(folder / "question_vectors.npy")
        texts = [q for line in records for q in line["questions"]]
        for row, text in enumerate(texts):
            self.questions[text_key(text)] = questions[row]


def chunks_of(
    previous: PreviousBuild, article: Article, budget: int, count_tokens: Callable[[str], int]
) -> tuple[Chunk, ...]:
    """Return an article's chunks: the previous build's when its file is unchanged and it
    was cut to the same budget by the same model, or cut now."""
    kept = previous.article_chunks.get(article.id)
    if kept is not None and previous.chunk_budget == budget and kept[0] == article.content_hash:
        return kept[1]
    return tuple(chunk_article(article.id, article.title, article.body, count_tokens, budget))


def embed_missing(
    texts: Sequence[str],
    cache: dict[str, np.ndarray],
    embed: Callable[[Sequence[str]], np.ndarray],
    dimension: int,
) -> tuple[np.ndarray, int]:
    """Return vectors for texts, embedding only those not in the cache."""
    keys = [text_key(t) for t in texts]
    missing = [i for i, key in enumerate(keys) if key not in cache]
    out = np.zeros((len(texts), dimension), dtype=np.float32)
    if missing:
        fresh = embed([texts[i] for i in missing])
        for i, vector in zip(missing, fresh, strict=True):
            out[i] = vector
    for i, key in enumerate(keys):
        if key in cache:
            out[i] = cache[key]
    return out, len(missing)
