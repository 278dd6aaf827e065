"""Near-duplicate articles: pairs whose closest sections are nearly the same text.

Each article's sections are the chunks the index embeds (:func:`chunk_article`: headings,
short sections merged, long ones split, each led by the title). Their vectors come from the
current index build where an article's file is unchanged since (no model needed), and are
embedded for the others. Two articles of the same language are near-duplicates when some
section of one and some section of the other have a cosine of at least the threshold
(``KBSEARCH_CHECK_DUPLICATE_SIMILARITY``); an article and its translations never count.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from kbsearch.content.articles import Article, family
from kbsearch.content.chunking import chunk_article
from kbsearch.index.builds import BUILDS, FORMAT, current_version, model_description
from kbsearch.index.embedding import Embedder

# Section pairs listed per near-duplicate pair, and rows of sections compared at once
# (a block of 512 rows against 50,000 sections of 384 floats is about 100 MB).
MAX_OVERLAPS = 3
BLOCK = 512
EmbedderSource = Embedder | Callable[[], Embedder]


@dataclass(frozen=True, eq=False)
class SectionVectors:
    """An article's section headings and their L2-normalised vectors, one row each."""

    headings: tuple[str, ...]
    vectors: np.ndarray


@dataclass(frozen=True)
class SectionOverlap:
    """A section of the first article, the section of the second like it, and their cosine."""

    first_heading: str
    second_heading: str
    similarity: float


@dataclass(frozen=True)
class NearDuplicate:
    """Two articles whose closest sections have at least the threshold's cosine."""

    first: Article
    second: Article
    similarity: float
    overlaps: tuple[SectionOverlap, ...]


@dataclass(frozen=True, eq=False)
class Sections:
    """Section vectors by article id, and where they came from (for people)."""

    vectors: Mapping[str, SectionVectors]
    reused: int
    embedded: int
    source: str


def near_duplicates(
    articles: Sequence[Article],
    sections: Mapping[str, SectionVectors],
    threshold: float,
) -> list[NearDuplicate]:
    """Return the pairs of articles whose closest sections have cosine >= threshold.

    Only articles of the same language are compared, never an article with its own
    translations (same :func:`family`); articles without sections are left out. Each pair
    comes once, the first in the order given, with up to three overlapping section pairs,
    closest first; pairs are sorted by similarity, highest first.
    """
    found: list[NearDuplicate] = []
    for language in sorted({a.language for a in articles}):
        members = [a for a in articles if a.language == language and a.id in sections
                   and len(sections[a.id].headings)]
        found.extend(_pairs_of(members, sections, threshold))
    return sorted(found, key=lambda d: (-d.similarity, d.first.path, d.second.path))


def _pairs_of(
    members: Sequence[Article], sections: Mapping[str, SectionVectors], threshold: float
) -> list[NearDuplicate]:
    """Return the near-duplicate pairs among articles of one language."""
    if len(members) < 2:
        return []
    vectors = np.concatenate([sections[a.id].vectors for a in members]).astype(np.float32)
    owner = np.concatenate([np.full(len(sections[a.id].headings), i)
                            for i, a in enumerate(members)])
    families = {name: i for i, name in enumerate(sorted({family(a) for a in members}))}
    group = np.array([families[family(members[i])] for i in owner])
    headings = [h for a in members for h in sections[a.id].headings]
    hits: dict[tuple[int, int], list[SectionOverlap]] = {}
    for start in range(0, len(vectors), BLOCK):
        stop = min(start + BLOCK, len(vectors))
        similarity = vectors[start:stop] @ vectors.T
        wanted = (owner[None, :] > owner[start:stop, None]) \
            & (group[None, :] != group[start:stop, None]) & (similarity >= threshold)
        for row, column in zip(*np.nonzero(wanted), strict=True):
            i = start + int(row)
            hits.setdefault((int(owner[i]), int(owner[column])), []).append(SectionOverlap(
                headings[i], headings[int(column)], float(similarity[row, column])))
    pairs = []
    for (first, second), overlaps in hits.items():
        overlaps.sort(key=lambda o: -o.similarity)
        pairs.append(NearDuplicate(members[first], members[second], overlaps[0].similarity,
                                   tuple(overlaps[:MAX_OVERLAPS])))
    return pairs


def _read_jsonl(path: Path) -> Iterator[dict]:
    """Yield the JSON objects of a JSON-lines file."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


@dataclass(frozen=True, eq=False)
class _Build:
    """What near-duplicates need of an index build: content hashes, model, sections."""

    version: str
    hashes: Mapping[str, str]
    model: Mapping[str, object]
    sections: Mapping[str, SectionVectors]


def _current_build(index_dir: Path | None) -> _Build | None:
    """Read the current build's section vectors; None when there is none of this format."""
    version = current_version(index_dir) if index_dir is not None else None
    if index_dir is None or version is None:
        return None
    folder = index_dir / BUILDS / version
    rows: dict[str, list[int]] = {}
    headings: dict[str, list[str]] = {}
    try:  # a build this kbsearch cannot read is no reason to fail: its sections are embedded
        manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
        if manifest.get("format") != FORMAT:
            return None
        vectors = np.load(folder / "chunk_vectors.npy", mmap_mode="r")
        for row, chunk in enumerate(_read_jsonl(folder / "chunks.jsonl")):
            rows.setdefault(chunk["article_id"], []).append(row)
            headings.setdefault(chunk["article_id"], []).append(chunk["heading"])
    except (OSError, ValueError, KeyError):
        return None
    sections = {key: SectionVectors(tuple(headings[key]), np.asarray(vectors[value]))
                for key, value in rows.items()}
    return _Build(version, dict(manifest.get("content_hashes", {})),
                  dict(manifest.get("model", {})), sections)


def embed_sections(
    articles: Sequence[Article], embedder: Embedder, chunk_tokens: int
) -> dict[str, SectionVectors]:
    """Chunk articles as the index does and embed their sections as passages."""
    budget = min(chunk_tokens, embedder.max_tokens)
    chunks = {a.id: chunk_article(a.id, a.title, a.body, embedder.count_tokens, budget)
              for a in articles}
    texts = [c.text for article_chunks in chunks.values() for c in article_chunks]
    vectors = embedder.embed_passages(texts) if texts else np.zeros((0, 0), np.float32)
    result: dict[str, SectionVectors] = {}
    start = 0
    for article_id, article_chunks in chunks.items():
        stop = start + len(article_chunks)
        result[article_id] = SectionVectors(tuple(c.heading for c in article_chunks),
                                            np.asarray(vectors[start:stop], np.float32))
        start = stop
    return result


def _loaded(embedder: EmbedderSource) -> Embedder:
    """Return the embedder, loading it first when given the function that loads it."""
    if hasattr(embedder, "embed_passages"):
        return cast(Embedder, embedder)
    return embedder()


def section_vectors(
    articles: Sequence[Article],
    index_dir: Path | None,
    embedder: EmbedderSource,
    chunk_tokens: int = 256,
) -> Sections:
    """Return the articles' section vectors, from the current index build where possible.

    An article whose file is unchanged since the build (same content hash) takes the
    build's vectors; the others are embedded. ``embedder`` may be a function that loads the
    model: it is called only when something must be embedded. When the loaded model is not
    the build's, every article is embedded, so that all vectors come from one model.
    """
    build = _current_build(index_dir)
    unchanged = {a.id for a in articles if build is not None and a.id in build.sections
                 and build.hashes.get(a.id) == a.content_hash}
    if build is not None and len(unchanged) == len(articles):
        return Sections({i: build.sections[i] for i in unchanged}, len(unchanged), 0,
                        f"sections of index build {build.version}")
    model = _loaded(embedder)
    if build is not None and dict(build.model) != model_description(model):
        unchanged = set()
    fresh = embed_sections([a for a in articles if a.id not in unchanged], model, chunk_tokens)
    vectors = {**{i: build.sections[i] for i in unchanged}, **fresh} if build else fresh
    source = f"{len(fresh)} article(s) embedded with {model.name}"
    if unchanged and build is not None:
        source += f", {len(unchanged)} from index build {build.version}"
    return Sections(vectors, len(unchanged), len(fresh), source)
