"""A fake embedding model for plumbing tests: deterministic, instant, and without torch.

:class:`FakeEmbedder` implements the ``Embedder`` protocol of :mod:`kbsearch.index.embedding`
from hashed features of the folded text (the words of :func:`kbsearch.content.analysis.words`
and their character trigrams), so that a query sharing words, or parts of words, with an
article lands close to it, and the sample knowledge base still answers sensible queries
sensibly. It knows no synonyms and no other language: tests of search quality use the
real model (the ``embedder`` fixture, marked ``model``).

Like E5, whose cosines of unrelated texts sit far above zero, every vector shares one
direction with weight ``shared``: the cosine of two texts is ``shared + (1 - shared) *``
the cosine of their hashed features. The shipped ranking weights were fitted on E5's
range of cosines, so this keeps their probabilities in a sensible range too.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from kbsearch.content.analysis import stopwords, words

TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
WORD_WEIGHT = 1.0
TRIGRAM_WEIGHT = 0.3


@functools.cache
def _stop() -> frozenset[str]:
    return stopwords("de") | stopwords("en")


@functools.lru_cache(maxsize=1 << 16)
def _slot(feature: str, buckets: int) -> tuple[int, float]:
    """Return the bucket (1..buckets) and sign of a feature, the same in every process."""
    digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
    return 1 + digest % buckets, (1.0 if digest >> 63 else -1.0)


@functools.lru_cache(maxsize=1 << 16)
def _word_features(word: str) -> tuple[str, ...]:
    """Return a folded word's own feature and those of its character trigrams."""
    marked = f"<{word}>"
    return ("w:" + word, *("c:" + marked[i : i + 3] for i in range(len(marked) - 2)))


def features(text: str) -> Counter[str]:
    """Return the weighted features of a text: folded words and their character trigrams.

    Stop words are left out unless the text has nothing else; repeats count sublinearly.
    """
    found = words(text)
    counts: Counter[str] = Counter()
    for word in [w for w in found if w not in _stop()] or found:
        counts.update(_word_features(word))
    return Counter({
        feature: (WORD_WEIGHT if feature.startswith("w:") else TRIGRAM_WEIGHT)
        * (1.0 + math.log(count))
        for feature, count in counts.items()
    })


class FakeEmbedder:
    """Turns texts into L2-normalised float32 vectors of hashed word and trigram features."""

    def __init__(self, dimension: int = 384, shared: float = 0.8,
                 name: str = "fake-hashed-ngrams") -> None:
        """Make an embedder of ``dimension`` whose unrelated texts have cosine ``shared``."""
        if dimension < 2 or not 0.0 <= shared < 1.0:
            raise ValueError("dimension must be at least 2 and shared in [0, 1)")
        self.name = name
        self.dimension = dimension
        self.shared = shared
        self.max_tokens = 512
        self.query_prompt = "query: "
        self.passage_prompt = "passage: "

    def _vector(self, text: str) -> np.ndarray:
        hashed = np.zeros(self.dimension, dtype=np.float64)
        for feature, weight in features(text).items():
            bucket, sign = _slot(feature, self.dimension - 1)
            hashed[bucket] += sign * weight
        norm = float(np.linalg.norm(hashed))
        if norm > 0:
            hashed *= math.sqrt(1.0 - self.shared) / norm
        hashed[0] = math.sqrt(self.shared) if norm > 0 else 1.0
        return hashed

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.ascontiguousarray([self._vector(t) for t in texts], dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Return one row per query text."""
        return self._embed(texts)

    def embed_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Return one row per passage text."""
        return self._embed(texts)

    def count_tokens(self, text: str) -> int:
        """Return a stand-in token count: words and punctuation marks, prompt and ends."""
        return 2 + len(TOKEN.findall(self.passage_prompt + text))
