"""Knowledge bases and vectors for scripts/bench.py: generated, seeded, from real text.

:func:`load_sources` reads, at run time, the sentences, headings and titles of the bundled
sample knowledge base (``articles/``) and of the evaluation corpora in ``../shared/eval``
(German and English), and their queries; nothing of them is copied into the project.
:func:`write_kb` recombines them into Markdown articles with front matter that
:func:`kbsearch.content.articles.parse_article` accepts. Article ``i`` depends only on the
seed and ``i`` (so the first 1k articles of the 10k knowledge base are the 1k knowledge
base), and lengths follow a log-normal spread around FAQ length.

:class:`ClusteredEmbedder` is a stand-in embedding model used only by the benchmark: it
turns each text, seeded by its hash, into a vector near one of a fixed set of random
cluster centres. It gives the 100k and 1M knowledge bases a dense index of realistic size
and shape (embedding a million articles with the real model would take more than a day);
it knows nothing of meaning, so only timings and recall of the FAISS index mean anything
over its vectors, never search quality.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from kbsearch.content.articles import load_articles

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-ZÄÖÜ0-9\"„(])")
LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
EMPHASIS = re.compile(r"\*\*|__|`")
WORD = re.compile(r"[a-z0-9äöüß]+")
EVAL_LANGUAGES = {"covidqa_faq_de": "de", "xquad_de": "de", "stackfaq_en": "en"}
CATEGORIES = ("konto", "rechnung", "vertrag", "technik", "lieferung", "tarife", "service",
              "sicherheit")
GERMAN_SHARE = 0.6
MEDIAN_WORDS = 220  # article length: log-normal around this median ...
LENGTH_SIGMA = 0.75  # ... with this spread (FAQ answers to long guides)
MIN_WORDS, MAX_WORDS = 25, 2500
SECTION_SENTENCES = 6  # a "## heading" about every this many sentences
SUBFOLDER_ARTICLES = 10_000  # articles per subfolder, so no folder holds a million files


@dataclass(frozen=True)
class Sources:
    """Real text to recombine, per language ("de", "en"), and real queries."""

    sentences: dict[str, tuple[str, ...]]
    headings: dict[str, tuple[str, ...]]
    titles: dict[str, tuple[str, ...]]
    queries: tuple[tuple[str, str], ...]  # (language, query text)


def split_sentences(text: str) -> list[str]:
    """Split plain text into sentences of at least three words."""
    parts = SENTENCE_END.split(" ".join(text.split()))
    return [p for p in (s.strip() for s in parts) if len(p.split()) >= 3]


def _markdown_text(body: str) -> tuple[list[str], list[str]]:
    """Return the sentences and the headings of an article's Markdown body."""
    sentences: list[str] = []
    headings: list[str] = []
    for line in body.splitlines():
        line = EMPHASIS.sub("", line).strip()
        if line.startswith("#"):
            headings.append(line.lstrip("#").strip())
        elif line and not line.startswith(("|", "```", ">")):
            sentences.extend(split_sentences(LIST_MARK.sub("", line)))
    return sentences, headings


def _add(pool: dict[str, list[str]], language: str, items: Sequence[str]) -> None:
    pool.setdefault(language, []).extend(items)


def _clean_title(title: str) -> str:
    """Return a title fit for front matter: one line, no markup, at most 200 characters."""
    title = " ".join(title.split())
    return "" if "<" in title or ">" in title or len(title) > 200 else title


def load_sources(articles: Path, eval_dir: Path) -> Sources:
    """Read the sample knowledge base and the evaluation sets found in ``eval_dir``."""
    sentences: dict[str, list[str]] = {}
    headings: dict[str, list[str]] = {}
    titles: dict[str, list[str]] = {}
    queries: list[tuple[str, str]] = []
    for article in load_articles(articles).articles:
        found, heads = _markdown_text(article.body)
        _add(sentences, article.language, found)
        _add(headings, article.language, heads)
        _add(titles, article.language, [article.title])
    for name, language in sorted(EVAL_LANGUAGES.items()):
        folder = eval_dir / name
        if not (folder / "corpus.jsonl").exists():
            continue
        for line in (folder / "corpus.jsonl").read_text("utf-8").splitlines():
            record = json.loads(line)
            _add(sentences, language, split_sentences(record.get("text", "")))
            _add(titles, language, [t for t in [_clean_title(record.get("title", ""))] if t])
        for line in (folder / "queries.jsonl").read_text("utf-8").splitlines():
            queries.append((language, json.loads(line)["text"]))
    freeze = {name: {lang: tuple(dict.fromkeys(items)) for lang, items in pool.items()}
              for name, pool in (("s", sentences), ("h", headings), ("t", titles))}
    for language in ("de", "en"):
        if not freeze["s"].get(language) or not freeze["t"].get(language):
            raise ValueError(f"no {language} text found in {articles} or {eval_dir}")
        freeze["h"].setdefault(language, freeze["t"][language])
    return Sources(freeze["s"], freeze["h"], freeze["t"], tuple(queries))


def article_words(rng: random.Random) -> int:
    """Draw an article's length in words from the log-normal spread."""
    drawn = rng.lognormvariate(math.log(MEDIAN_WORDS), LENGTH_SIGMA)
    return int(min(MAX_WORDS, max(MIN_WORDS, drawn)))


def article_id(index: int) -> str:
    """Return the id (a slug) of generated article ``index``."""
    return f"bench-{index:07d}"


def article_path(folder: Path, index: int) -> Path:
    """Return the file of generated article ``index`` below ``folder``."""
    return folder / f"part-{index // SUBFOLDER_ARTICLES:03d}" / f"{article_id(index)}.md"


def _body(rng: random.Random, sources: Sources, language: str, title: str) -> str:
    """Recombine sentences into a Markdown body of a drawn length, with sections and lists."""
    target, count, lines = article_words(rng), 0, [f"# {title}", ""]
    pool, heads = sources.sentences[language], sources.headings[language]
    paragraph: list[str] = []
    sentence_no = 0
    while count < target:
        sentence = rng.choice(pool)
        count += len(sentence.split())
        sentence_no += 1
        if sentence_no % SECTION_SENTENCES == 0:
            lines += [" ".join(paragraph), "", f"## {rng.choice(heads)}", ""]
            paragraph = []
        if rng.random() < 0.15:
            lines += [" ".join(paragraph), "", f"- {sentence}", f"- {rng.choice(pool)}", ""]
            paragraph = []
        else:
            paragraph.append(sentence)
    lines.append(" ".join(paragraph))
    return "\n".join(line for line in lines).strip() + "\n"


def article_text(index: int, seed: int, sources: Sources) -> str:
    """Return generated article ``index`` (front matter and body) for this seed."""
    rng = random.Random(f"{seed}:{index}")
    language = "de" if rng.random() < GERMAN_SHARE else "en"
    title = rng.choice(sources.titles[language])
    tags = sorted({w for w in WORD.findall(title.lower()) if len(w) > 3})[:4]
    front = {
        "id": article_id(index), "title": title, "language": language,
        "category": rng.choice(CATEGORIES), "tags": tags,
        "updated": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    }
    meta = yaml.safe_dump(front, allow_unicode=True, sort_keys=False, width=10_000)
    return f"---\n{meta}---\n{_body(rng, sources, language, title)}"


def write_kb(folder: Path, count: int, seed: int, sources: Sources) -> None:
    """Write ``count`` generated articles below ``folder`` (subfolders of 10k)."""
    for index in range(count):
        path = article_path(folder, index)
        if index % SUBFOLDER_ARTICLES == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(article_text(index, seed, sources), "utf-8")


def change_articles(folder: Path, count: int, total: int, seed: int, round_: int) -> None:
    """Append a new sentence to ``count`` seeded articles, as an editor's change would."""
    rng = random.Random(f"{seed}:change:{round_}")
    for index in rng.sample(range(total), min(count, total)):
        path = article_path(folder, index)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"\nÄnderung {round_}: bitte beachten Sie den neuen Hinweis {index}.\n")


def mixed_queries(sources: Sources, count: int, seed: int) -> list[str]:
    """Return ``count`` queries, half German and half English, in a seeded order."""
    rng = random.Random(f"{seed}:queries")
    by_language = {lang: [q for lg, q in sources.queries if lg == lang] for lang in ("de", "en")}
    if not by_language["de"] or not by_language["en"]:
        raise ValueError("the evaluation sets give no German or no English queries")
    chosen = [rng.choice(by_language["de" if i % 2 == 0 else "en"]) for i in range(count)]
    rng.shuffle(chosen)
    return chosen


class ClusteredEmbedder:
    """Seeded synthetic vectors near random cluster centres; for the benchmark only.

    A text's vector depends only on the text and the seed: its hash picks a centre and
    seeds the noise around it, so equal texts get equal vectors in every process. Token
    counts are estimated from words (1.4 tokens a word), so chunks come out about as long
    as the real model's.
    """

    def __init__(self, dimension: int = 384, clusters: int = 1024, spread: float = 0.6,
                 seed: int = 0) -> None:
        """Make the cluster centres; ``spread`` is the noise's norm next to a centre's."""
        self.name = f"bench-clustered-{dimension}d-{clusters}c-seed{seed}"
        self.dimension = dimension
        self.query_prompt = "query: "
        self.passage_prompt = "passage: "
        self.max_tokens = 512
        self.spread = spread
        self.seed = seed
        centres = np.random.default_rng(seed).standard_normal((clusters, dimension))
        self.centres = (centres / np.linalg.norm(centres, axis=1, keepdims=True)).astype(
            np.float32)

    def _vector(self, text: str) -> np.ndarray:
        digest = hashlib.blake2b(f"{self.seed}:{text}".encode(), digest_size=8).digest()
        number = int.from_bytes(digest, "little")
        noise = np.random.default_rng(number).standard_normal(self.dimension)
        vector = self.centres[number % len(self.centres)] + (
            self.spread * noise / math.sqrt(self.dimension))
        return vector / np.linalg.norm(vector)

    def _embed(self, texts: Sequence[str], prompt: str) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self._vector(prompt + text)
        return out

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Return one synthetic vector per query."""
        return self._embed(texts, self.query_prompt)

    def embed_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Return one synthetic vector per passage."""
        return self._embed(texts, self.passage_prompt)

    def count_tokens(self, text: str) -> int:
        """Estimate the model tokens of a passage from its words."""
        return 4 + math.ceil(1.4 * len((self.passage_prompt + text).split()))
