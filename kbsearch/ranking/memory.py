"""Learned questions: the queries an article answered well, remembered as vectors.

A search engine's feature weights learn little that carries to new queries; what carries is
knowing which questions each article has already answered. When feedback says an article
helped or resolved a query, the query's embedding is kept as a learned question of that
article, and a later query's similarity to those questions (summed over them, capped at 1)
becomes the ``question_sim`` ranking feature (and brings the article into the candidates
even if neither retriever found it). This is the "query memory" idea of click-through
document expansion (Xue et al., SIGIR 2004), with vectors instead of words. Editors can
seed it: the ``questions`` of an article's front matter are matched the same way
(:func:`match_editor_questions`) and feed the same feature.

Bounded on purpose, so that no single client can plant questions on an article:
- a client adds at most ``per_client`` questions to an article (its newest ones; one by
  default, so one client's evidence for an article is at most 0.5);
- near-identical questions (cosine >= ``merge_at``) merge into one; a question's weight
  grows with the number of distinct clients who asked it, 1 - 0.5 ** clients, so one
  client alone reaches 0.5 and never 1;
- weights decay with age (half-life), and an article keeps at most ``per_article``.

Everything here is plain numpy; files are ``.npz`` arrays without pickle.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbsearch.errors import ConfigError
from kbsearch.ranking.scoring import question_match

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class AnsweredQuestion:
    """One query that an article answered, as feedback reported it."""

    article_id: str
    vector: np.ndarray
    client: str
    created: float


@dataclass(frozen=True)
class MemoryLimits:
    """How much a memory keeps and how fast it forgets."""

    per_article: int = 50
    per_client: int = 1
    half_life_days: float = 180.0
    merge_at: float = 0.97
    floor: float = 0.9


@dataclass(frozen=True)
class QuestionMemory:
    """Learned question vectors, one row each, with the article they belong to."""

    article_ids: tuple[str, ...]
    vectors: np.ndarray
    weights: np.ndarray
    floor: float = MemoryLimits.floor

    def __len__(self) -> int:
        return len(self.article_ids)

    def match(self, query_vector: np.ndarray) -> dict[str, float]:
        """Return article id → evidence that the query is one of its questions (> 0 only).

        The evidence is the sum of the weighted matches with the article's questions, capped
        at 1: several different paraphrases vouching for an article count more than one.
        """
        if not self.article_ids:
            return {}
        values = self.weights * question_match(self.vectors @ query_vector, self.floor)
        total: dict[str, float] = {}
        for row in np.nonzero(values > 0)[0]:
            article = self.article_ids[row]
            total[article] = total.get(article, 0.0) + float(values[row])
        return {article: min(1.0, value) for article, value in total.items()}

    def save(self, path: Path) -> None:
        """Write the memory as an ``.npz`` file (float16 vectors, no pickle)."""
        with path.open("wb") as handle:
            np.savez_compressed(
                handle,
                article_ids=np.array(self.article_ids, dtype=np.str_),
                vectors=self.vectors.astype(np.float16),
                weights=self.weights.astype(np.float32),
                floor=np.array(self.floor),
            )

    @classmethod
    def load(cls, path: Path) -> QuestionMemory:
        """Read a memory written by :meth:`save`; raise ConfigError if it is unreadable."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    article_ids=tuple(str(a) for a in data["article_ids"]),
                    vectors=data["vectors"].astype(np.float32),
                    weights=data["weights"].astype(np.float64),
                    floor=float(data["floor"]),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"cannot read learned questions {path}: {exc}") from None


def match_editor_questions(
    similarity: np.ndarray, owners: np.ndarray, floor: float
) -> dict[int, float]:
    """Return owner → how well the query matches its editors' questions (> 0 only).

    ``similarity`` holds the query's cosine with each question, ``owners`` the article
    (position) each question belongs to. An article's evidence is its best question's
    match, :func:`question_match` (0 up to ``floor``): an editor vouches for every one of
    them, so a question counts in full, but writing many does not add up.
    """
    values = question_match(similarity, floor)
    best: dict[int, float] = {}
    for row in np.nonzero(values > 0)[0]:
        owner = int(owners[row])
        best[owner] = max(best.get(owner, 0.0), float(values[row]))
    return best


def empty_memory(floor: float = MemoryLimits.floor) -> QuestionMemory:
    """Return a memory without questions."""
    return QuestionMemory((), np.zeros((0, 0), dtype=np.float32), np.zeros(0), floor)


def build_memory(
    answered: Iterable[AnsweredQuestion], now: float, limits: MemoryLimits = MemoryLimits()
) -> QuestionMemory:
    """Merge answered questions into a bounded, decayed memory (see the module docstring)."""
    per_pair: dict[tuple[str, str], list[AnsweredQuestion]] = defaultdict(list)
    for item in answered:
        per_pair[(item.article_id, item.client)].append(item)
    per_article: dict[str, list[AnsweredQuestion]] = defaultdict(list)
    for (article, _), items in per_pair.items():
        items.sort(key=lambda a: a.created, reverse=True)
        per_article[article].extend(items[: limits.per_client])

    ids: list[str] = []
    vectors: list[np.ndarray] = []
    weights: list[float] = []
    for article in sorted(per_article):
        for vector, weight in _merge(per_article[article], now, limits):
            ids.append(article)
            vectors.append(vector)
            weights.append(weight)
    if not ids:
        return empty_memory(limits.floor)
    return QuestionMemory(
        tuple(ids), np.vstack(vectors).astype(np.float32), np.array(weights), limits.floor
    )


def _merge(
    items: Sequence[AnsweredQuestion], now: float, limits: MemoryLimits
) -> list[tuple[np.ndarray, float]]:
    """Cluster one article's questions greedily (newest first) and weigh each cluster."""
    items = sorted(items, key=lambda a: a.created, reverse=True)
    matrix = np.vstack([_unit(a.vector) for a in items])
    similarity = matrix @ matrix.T
    assigned = np.full(len(items), -1)
    clusters: list[list[int]] = []
    for i in range(len(items)):
        if assigned[i] >= 0:
            continue
        members = [int(j) for j in np.nonzero(similarity[i] >= limits.merge_at)[0]
                   if assigned[j] < 0]
        assigned[members] = len(clusters)
        clusters.append(members)
    merged = []
    for members in clusters:
        clients = len({items[j].client for j in members})
        newest = max(items[j].created for j in members)
        age_days = max(0.0, now - newest) / SECONDS_PER_DAY
        weight = (1.0 - 0.5**clients) * 0.5 ** (age_days / limits.half_life_days)
        merged.append((_unit(matrix[members].mean(axis=0)), weight))
    merged.sort(key=lambda vw: -vw[1])
    return merged[: limits.per_article]


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 and math.isfinite(norm) else vector).astype(np.float32)
