"""The search service used by the API, the CLI and the evaluation; no web code here."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbsearch import dense as dense_search
from kbsearch.analysis import LANGUAGES, fold, snippet_terms
from kbsearch.articles import Article
from kbsearch.chunking import plain_text
from kbsearch.config import Settings
from kbsearch.embedding import Embedder, SentenceTransformerEmbedder
from kbsearch.errors import ArticleNotFoundError, QueryError
from kbsearch.indexer import LoadedIndex, current_version, open_index
from kbsearch.ranking import (
    MODES,
    Candidates,
    Hit,
    RankingModel,
    load_ranking_model,
    rank_mode,
)

VISIBILITIES = ("public", "internal")
RELOAD_CHECK_SECONDS = 1.0
SNIPPET_CHARS = 240


@dataclass(frozen=True)
class SearchRequest:
    """A validated search: the query and its filters."""

    query: str
    k: int
    language: str | None = None
    tags: tuple[str, ...] = ()
    category: str | None = None
    visibility: str = "public"
    mode: str = "hybrid"


@dataclass(frozen=True)
class Result:
    """One hit with the article it points to and a snippet for display."""

    hit: Hit
    article: Article
    snippet: str


@dataclass(frozen=True)
class SearchResponse:
    """The ranked results of one search."""

    search_id: str
    query: str
    took_ms: float
    index_version: str
    results: tuple[Result, ...]


def make_snippet(text: str, query: str, fallback: str = "", length: int = SNIPPET_CHARS) -> str:
    """Return the sentence of ``text`` that shares most words with the query, shortened."""
    wanted = [w[: max(4, len(w) - 2)] for w in snippet_terms(query)]
    sentences = [s.strip() for s in re.split(r"(?<=[.!?:])\s+|\n+", text) if s.strip()]
    best, best_score = "", 0
    for sentence in sentences:
        tokens = {fold(t) for t in re.findall(r"\w+", sentence)}
        score = sum(any(t.startswith(w) for t in tokens) for w in wanted)
        if score > best_score:
            best, best_score = sentence, score
    if not best:
        best = fallback or (sentences[0] if sentences else "")
    best = " ".join(best.split())
    if len(best) > length:
        cut = best.rfind(" ", 0, length - 1)
        best = best[: cut if cut > 0 else length - 1].rstrip(",;:") + "…"
    return best


class SearchService:
    """Hybrid search over the current index build, reloaded when a new build is published."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder | None = None,
        embedder_factory: Callable[[Settings], Embedder] | None = None,
        ranking: RankingModel | None = None,
    ) -> None:
        """Create the service; the model and index load lazily on first use."""
        self.settings = settings
        self._embedder = embedder
        self._embedder_factory = embedder_factory or default_embedder
        self.ranking = ranking or load_ranking_model(settings.weights or None)
        self._index: LoadedIndex | None = None
        self._masks: dict[tuple[str, str], np.ndarray] = {}
        self._checked = 0.0
        self._lock = threading.Lock()

    @property
    def index_dir(self) -> Path:
        """Return the folder of versioned builds."""
        return self.settings.index

    @property
    def embedder(self) -> Embedder:
        """Return the embedding model, loading it on first use."""
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    self._embedder = self._embedder_factory(self.settings)
        return self._embedder

    def index(self) -> LoadedIndex:
        """Return the current build, switching to a newer one when it has been published."""
        now = time.monotonic()
        if self._index is not None and now - self._checked < RELOAD_CHECK_SECONDS:
            return self._index
        with self._lock:
            self._checked = now
            version = current_version(self.index_dir)
            if self._index is None or (version and version != self._index.version):
                self._index = open_index(self.index_dir, version)
            return self._index

    def warm_up(self) -> None:
        """Load the model and the index now rather than on the first request."""
        self.index()
        self.embedder.embed_queries(["warm-up"])

    def validate(
        self,
        query: str | None,
        k: int | str | None = None,
        language: str | None = None,
        tags: Sequence[str] | str | None = None,
        category: str | None = None,
        visibility: str = "public",
        mode: str = "hybrid",
    ) -> SearchRequest:
        """Check search parameters; raise QueryError naming the bad parameter."""
        if query is None or not str(query).strip():
            raise QueryError("q", "the query is empty; type a question or some words")
        query = " ".join(str(query).split())
        if len(query) > self.settings.max_query_chars:
            raise QueryError(
                "q",
                f"the query has {len(query)} characters; at most "
                f"{self.settings.max_query_chars} are allowed",
            )
        if k is None or k == "":
            k = self.settings.default_k
        try:
            k = int(k)
        except (TypeError, ValueError):
            raise QueryError("k", f"{k!r} is not a whole number") from None
        if not 1 <= k <= self.settings.max_k:
            raise QueryError("k", f"must be between 1 and {self.settings.max_k}, got {k}")
        if language is not None and language != "":
            if language not in self.settings.languages:
                raise QueryError(
                    "lang", f"{language!r} is not one of {', '.join(self.settings.languages)}"
                )
        else:
            language = None
        if isinstance(tags, str):
            tags = [t for t in tags.split(",")]
        tag_tuple = tuple(dict.fromkeys(t.strip().lower() for t in tags or () if t.strip()))
        if visibility not in VISIBILITIES:
            raise QueryError("visibility", f"{visibility!r} is not one of public, internal")
        if mode not in MODES:
            raise QueryError("mode", f"{mode!r} is not one of {', '.join(MODES)}")
        category = category.strip() if category and category.strip() else None
        return SearchRequest(query, k, language, tag_tuple, category, visibility, mode)

    def _visible(self, index: LoadedIndex, visibility: str) -> np.ndarray:
        """Return (cached per build) the mask of published articles visible at a level."""
        key = (index.version, visibility)
        mask = self._masks.get(key)
        if mask is None:
            mask = np.array(
                [
                    a.status == "published" and (visibility != "public" or a.audience == "public")
                    for a in index.articles
                ],
                dtype=bool,
            )
            self._masks = {k: v for k, v in self._masks.items() if k[0] == index.version}
            self._masks[key] = mask
        return mask

    def _allowed(self, index: LoadedIndex, request: SearchRequest) -> np.ndarray:
        """Return a boolean mask over the index's articles that this request may see."""
        mask = self._visible(index, request.visibility)
        if not (request.language or request.category or request.tags):
            return mask

        def wanted(article: Article) -> bool:
            if request.language and article.language != request.language:
                return False
            if request.category and article.category != request.category:
                return False
            return all(tag in article.tags for tag in request.tags)

        return mask & np.array([wanted(a) for a in index.articles], dtype=bool)

    def candidates(
        self, index: LoadedIndex, request: SearchRequest, query_vector: np.ndarray
    ) -> Candidates:
        """Collect the top candidates of both retrievers with all their raw scores."""
        n = self.settings.candidates
        mask = self._allowed(index, request)
        if not mask.any():
            return _empty_candidates()
        everything = bool(mask.all())
        chunk_rows = None if everything else np.nonzero(mask[index.chunk_article])[0]
        per_article = max(1, int(np.ceil(len(index.chunk_article) / max(1, len(mask)))))
        found = dense_search.search(index.dense, query_vector, n * per_article * 2, chunk_rows)
        dense_order = list(dict.fromkeys(int(a) for a in index.chunk_article[found.rows]))[:n]
        languages = (request.language,) if request.language else LANGUAGES
        allowed_ids = None if everything else {
            index.articles[i].id for i in np.nonzero(mask)[0]
        }
        keyword_ids, keyword_scores = index.keyword.search(
            request.query, n, allowed_ids, languages
        )
        keyword_order = [index.positions[a] for a in keyword_ids]
        pool = list(dict.fromkeys(dense_order + keyword_order))
        dense_rank = {a: r for r, a in enumerate(dense_order)}
        keyword_rank = {a: r for r, a in enumerate(keyword_order)}
        best_chunk = np.array(
            [
                float(
                    np.max(
                        index.chunk_vectors[index.chunk_starts[a] : index.chunk_starts[a + 1]]
                        @ query_vector
                    )
                )
                for a in pool
            ]
        )
        ids = tuple(index.articles[a].id for a in pool)
        kw = [keyword_scores.get(i) for i in ids]
        return Candidates(
            ids=ids,
            dense=best_chunk,
            title_sim=index.title_vectors[pool] @ query_vector,
            bm25=np.array([s.total if s else 0.0 for s in kw]),
            bm25_title=np.array([s.title if s else 0.0 for s in kw]),
            bm25_body=np.array([s.body if s else 0.0 for s in kw]),
            coverage=np.array([s.coverage if s else 0.0 for s in kw]),
            dense_rank=np.array([dense_rank.get(a, -1) for a in pool]),
            keyword_rank=np.array([keyword_rank.get(a, -1) for a in pool]),
        )

    def rank(self, candidates: Candidates, mode: str, k: int) -> list[Hit]:
        """Order candidates for a mode: the learned hybrid model, or one retriever alone."""
        return rank_mode(
            candidates, mode, self.ranking.for_mode(mode), k, self.settings.min_probability
        )

    def search(self, query: str | None, **params: object) -> SearchResponse:
        """Validate, retrieve, rank; return the top results with snippets."""
        started = time.perf_counter()
        request = self.validate(query, **params)  # type: ignore[arg-type]
        index = self.index()
        query_vector = self.embedder.embed_queries([request.query])[0]
        candidates = self.candidates(index, request, query_vector)
        hits = self.rank(candidates, request.mode, request.k)
        results = []
        for hit in hits:
            article = index.articles[index.positions[hit.id]]
            results.append(Result(hit, article, self._snippet(index, article, request.query)))
        return SearchResponse(
            search_id=uuid.uuid4().hex,
            query=request.query,
            took_ms=round((time.perf_counter() - started) * 1000, 2),
            index_version=index.version,
            results=tuple(results),
        )

    def _snippet(self, index: LoadedIndex, article: Article, query: str) -> str:
        lines = [ln for ln in plain_text(article.body).split("\n") if ln.strip() != article.title]
        body = "\n".join(lines).strip()
        first = body.split("\n\n", 1)[0] if body else ""
        return make_snippet(body, query, fallback=first)

    def article(self, article_id: str, visibility: str = "public") -> Article:
        """Return a published article visible at this level; raise ArticleNotFoundError."""
        index = self.index()
        position = index.positions.get(article_id)
        if position is None:
            raise ArticleNotFoundError(article_id)
        article = index.articles[position]
        if article.status != "published" or (
            visibility == "public" and article.audience != "public"
        ):
            raise ArticleNotFoundError(article_id)
        return article

    def articles(self, visibility: str = "public") -> list[Article]:
        """Return every published article visible at this level, by category and title."""
        index = self.index()
        return sorted(
            (
                a
                for a in index.articles
                if a.status == "published" and (visibility != "public" or a.audience == "public")
            ),
            key=lambda a: (a.category, a.title.lower()),
        )


def _empty_candidates() -> Candidates:
    empty = np.zeros(0)
    return Candidates((), empty, empty, empty, empty, empty, empty, empty.astype(int),
                      empty.astype(int))


def default_embedder(settings: Settings) -> Embedder:
    """Load the configured sentence-transformers model."""
    return SentenceTransformerEmbedder(
        settings.model,
        query_prompt=settings.query_prompt,
        passage_prompt=settings.passage_prompt,
        device=settings.device,
        batch_size=settings.batch_size,
    )
