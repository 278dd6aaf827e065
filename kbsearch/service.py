"""The search service used by the API, the CLI and the evaluation; no web code here."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from kbsearch import BLAS_THREADS_SLEEP, heap
from kbsearch.config import Settings
from kbsearch.content.analysis import LANGUAGES, confident_language, detect_language
from kbsearch.content.articles import Article, article_url, family
from kbsearch.content.redaction import Redactor
from kbsearch.content.snippets import article_snippet
from kbsearch.content.visibility import Caller, may_see
from kbsearch.errors import (
    ArticleNotFoundError,
    ConfigError,
    FeedbackError,
    FeedbackStoreError,
    QueryError,
    UnknownSearchError,
)
from kbsearch.index.builds import LoadedIndex, current_version, open_index
from kbsearch.index.deadline import Deadline
from kbsearch.index.e5engine import default_embedder as default_embedder
from kbsearch.index.embedding import Embedder
from kbsearch.index.retrieval import (
    DenseRetriever,
    KeywordRetriever,
    RetrievalQuery,
    Retriever,
    RetrieverPool,
    SearchRequest,
    best_chunk_similarity,
    retrieve_all,
)
from kbsearch.index.vector_cache import VectorCache
from kbsearch.queries import check_search
from kbsearch.ranking.families import one_per_family
from kbsearch.ranking.memory import match_editor_questions
from kbsearch.ranking.scoring import (
    FEATURES,
    Candidates,
    Hit,
    RankingModel,
    rank_mode,
    staleness,
)
from kbsearch.ranking.versions import Ranker, WeightsStore, default_ranker
from kbsearch.stores.feedback import (
    CHANNELS,
    EVENTS,
    FeedbackEvent,
    FeedbackStore,
    SearchLog,
    ShownResult,
)
from kbsearch.stores.feedback_sqlite import SQLiteFeedbackStore
from kbsearch.stores.feedback_tokens import FeedbackTokens

log = logging.getLogger(__name__)
RELOAD_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Result:
    """One hit with the article it points to and a snippet for display."""

    hit: Hit
    article: Article
    snippet: str
    translations: tuple[Article, ...] = ()  # the article's other languages, left out


@dataclass(frozen=True)
class SearchResponse:
    """The ranked results of one search."""

    search_id: str
    query: str
    took_ms: float
    index_version: str
    results: tuple[Result, ...]
    model_version: str = ""
    feedback_token: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form of the response (the API's and ``kbsearch search --json``)."""
        return {
            "search_id": self.search_id,
            "query": self.query,
            "took_ms": self.took_ms,
            "index_version": self.index_version,
            "model_version": self.model_version,
            "feedback_token": self.feedback_token,
            "results": [
                {
                    "id": r.article.id,
                    "title": r.article.title,
                    "url": article_url(r.article.id),
                    "snippet": r.snippet,
                    "probability": round(r.hit.probability, 4),
                    "scores": dict(r.hit.scores),
                    "language": r.article.language,
                    "category": r.article.category,
                    "tags": list(r.article.tags),
                    "updated": r.article.updated.isoformat() if r.article.updated else None,
                    "translations": [
                        {"id": t.id, "title": t.title, "language": t.language,
                         "url": article_url(t.id)} for t in r.translations],
                }
                for r in self.results
            ],
        }


class SearchService:
    """Hybrid search over the current index build, reloaded when a new build is published."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder | None = None,
        embedder_factory: Callable[[Settings], Embedder] | None = None,
        ranking: RankingModel | None = None,
        feedback: FeedbackStore | None = None,
        retrievers: Sequence[Retriever] = (DenseRetriever(), KeywordRetriever()),
    ) -> None:
        """Create the service; the model, index, weights and feedback store load lazily.

        The ranking comes from, in this order: ``ranking`` (fixed), the weights file of the
        ``weights`` setting (fixed), or the current version in ``weights_dir`` (followed
        when ``kbsearch train`` or ``kbsearch weights`` switch it).
        """
        self.settings = settings
        self.retrievers = tuple(retrievers)
        self.redactor = Redactor.with_patterns(
            [settings.redact_pattern] if settings.redact_pattern else [])
        self._embedder = embedder
        self._query_vectors = VectorCache(settings.query_cache)
        self._embedder_factory = embedder_factory or default_embedder
        self._fixed_ranker: Ranker | None = None
        if ranking is not None:
            self._fixed_ranker = Ranker("custom", ranking, default_ranker().questions,
                                        default_ranker().helpfulness)
        elif settings.weights:
            self._fixed_ranker = default_ranker(settings.weights)
        self.weights = WeightsStore(settings.weights_dir)
        self._ranker: Ranker | None = None
        self._ranker_stamp = -1.0
        self._ranker_checked = 0.0
        self._feedback = feedback
        self.tokens = FeedbackTokens(settings.feedback_secret_file)
        self._index: LoadedIndex | None = None
        self._masks: dict[tuple[str, str], np.ndarray] = {}
        self._checked = 0.0
        self._lock = threading.Lock()
        self._pool = RetrieverPool()

    @property
    def feedback(self) -> FeedbackStore:
        """Return the feedback store, opening the configured SQLite file on first use."""
        if self._feedback is None:
            with self._lock:
                if self._feedback is None:
                    self._feedback = SQLiteFeedbackStore(self.settings.feedback_db)
        return self._feedback

    def ranker(self, refresh: bool = False) -> Ranker:
        """Return the weights in use, switching when another version has been made current.

        The current version is checked at most once a second, or now with ``refresh``.
        """
        if self._fixed_ranker is not None:
            return self._fixed_ranker
        now = time.monotonic()
        if (self._ranker is not None and not refresh
                and now - self._ranker_checked < RELOAD_CHECK_SECONDS):
            return self._ranker
        with self._lock:
            self._ranker_checked = now
            stamp = self.weights.current_stamp()
            if self._ranker is None or stamp != self._ranker_stamp:
                self._ranker = self.weights.load()
                self._ranker_stamp = stamp
            return self._ranker

    @property
    def ranking(self) -> RankingModel:
        """Return the ranking model of the weights in use."""
        return self.ranker().model

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

    def query_vector(self, text: str) -> np.ndarray:
        """Return a query's vector (read-only), embedded once while it stays in the cache."""
        return self._query_vectors.get(text, lambda t: self.embedder.embed_queries([t])[0])

    def index(self) -> LoadedIndex:
        """Return the current build, switching to a newer one when it has been published."""
        now = time.monotonic()
        if self._index is not None and now - self._checked < RELOAD_CHECK_SECONDS:
            return self._index
        with self._lock:
            self._checked = now
            version = current_version(self.index_dir)
            if self._index is None or (version and version != self._index.version):
                replaced, self._index = self._index, open_index(self.index_dir, version)
                if replaced is not None:  # a first one is frozen by warm_up
                    heap.freeze()  # free the replaced build's cycles, freeze the new one
            return self._index

    def warm_up(self, before_fork: bool = False) -> None:
        """Load the model, the index and the language detector now, not on a first request.

        ``kbsearch serve`` calls it before gunicorn forks (``before_fork``), so every worker,
        a replaced one too, starts with them loaded, and again in each worker: an engine
        whose threads do not survive fork (ONNX Runtime, ``per_process``) is loaded there
        only. Where numpy's BLAS threads spin after each product (numpy was imported before
        kbsearch, see ``kbsearch/__init__.py``), it keeps BLAS on the calling thread, so that
        they do not take the cores of the next embedding. Last, what is loaded is frozen out
        of the cyclic garbage collector's walks (:mod:`kbsearch.heap`).
        """
        if not BLAS_THREADS_SLEEP:
            threadpool_limits(limits=1, user_api="blas")
        self.index()
        if not (before_fork and getattr(self.embedder, "per_process", False)):
            self.embedder.embed_queries(["warm-up"])
        detect_language("warm up the language detector")
        heap.freeze(collect=before_fork)  # see kbsearch.heap

    def _visible(self, index: LoadedIndex, visibility: str) -> np.ndarray:
        """Return (cached per build) the mask of published articles visible at a level."""
        key = (index.version, visibility)
        mask = self._masks.get(key)
        if mask is None:
            mask = np.array([may_see(a, visibility) for a in index.articles], dtype=bool)
            self._masks = {k: v for k, v in self._masks.items() if k[0] == index.version}
            self._masks[key] = mask
        return mask

    def _allowed(self, index: LoadedIndex, request: SearchRequest) -> np.ndarray:
        """Return a boolean mask over the index's articles that this request may see."""
        mask = self._visible(index, request.visibility)
        if not (request.language or request.category or request.tags):
            return mask
        return mask & index.facets.mask(request.language, request.category, request.tags)

    def candidates(
        self, index: LoadedIndex, request: SearchRequest, query_vector: np.ndarray,
        ranker: Ranker | None = None, deadline: Deadline | None = None,
    ) -> Candidates:
        """Collect the top candidates of every retriever with all their raw scores."""
        return self.gather(index, request, lambda: query_vector, ranker, deadline)[0]

    def gather(
        self, index: LoadedIndex, request: SearchRequest, vector_of: Callable[[], np.ndarray],
        ranker: Ranker | None = None, deadline: Deadline | None = None,
    ) -> tuple[Candidates, np.ndarray]:
        """Collect the candidates as :meth:`candidates` does; return them and the vector.

        ``vector_of`` gives the query vector; retrievers that need none run meanwhile
        (:func:`retrieve_all`). Articles whose learned or editors' questions match the
        query join the candidates too; ``question_sim`` is the two matches added up (at
        most 1). Past the ``deadline``, a retriever is stopped or its answer refused
        (SearchTimeoutError).
        """
        ranker = ranker or self.ranker()
        mask = self._allowed(index, request)
        if not mask.any():
            return _empty_candidates(), vector_of()
        languages = (request.language,) if request.language else LANGUAGES
        query = RetrievalQuery(request.query, None, languages, mask, deadline)
        found, query_vector = retrieve_all(self.retrievers, index, query, vector_of,
                                           self.settings.candidates, self._pool)
        dense, keyword = found["dense"], found["keyword"]
        learned = {
            index.positions[a]: v for a, v in ranker.questions.match(query_vector).items()
            if a in index.positions and mask[index.positions[a]]
        }
        edited = match_editor_questions(index.question_vectors @ query_vector,
                                        index.question_article, self.settings.question_floor)
        for a, v in edited.items():
            if mask[a]:
                learned[a] = min(1.0, learned.get(a, 0.0) + v)
        pool = list(dict.fromkeys([*dense.order, *keyword.order, *sorted(learned)]))
        dense_rank = {a: r for r, a in enumerate(dense.order)}
        keyword_rank = {a: r for r, a in enumerate(keyword.order)}
        ids = tuple(index.articles[a].id for a in pool)
        no_keyword: dict[str, float] = {}
        kw = [keyword.scores.get(a, no_keyword) for a in pool]
        today = dt.date.today()
        return Candidates(
            ids=ids,
            dense=best_chunk_similarity(index, pool, query_vector),
            title_sim=index.title_vectors[pool] @ query_vector,
            bm25=np.array([s.get("bm25", 0.0) for s in kw]),
            bm25_title=np.array([s.get("bm25_title", 0.0) for s in kw]),
            bm25_body=np.array([s.get("bm25_body", 0.0) for s in kw]),
            coverage=np.array([s.get("coverage", 0.0) for s in kw]),
            dense_rank=np.array([dense_rank.get(a, -1) for a in pool]),
            keyword_rank=np.array([keyword_rank.get(a, -1) for a in pool]),
            question_sim=np.array([learned.get(a, 0.0) for a in pool]),
            helpfulness=ranker.helpfulness.scores(ids),
            stale=staleness(np.array([_days_overdue(index.articles[a], today) for a in pool])),
        ), query_vector

    def rank(
        self, candidates: Candidates, mode: str, k: int, ranker: Ranker | None = None
    ) -> list[Hit]:
        """Order candidates for a mode: the learned hybrid model, or one retriever alone."""
        model = (ranker or self.ranker()).model.for_mode(mode)
        return rank_mode(candidates, mode, model, k, self.settings.min_probability)

    def search(
        self, query: str | None, channel: str = "api", client: str = "", log: bool = True,
        caller: Caller | None = None, synthetic: bool = False, deadline: Deadline | None = None,
        **params: object,
    ) -> SearchResponse:
        """Validate, retrieve, rank; log what was shown; return the top results with snippets.

        With a ``caller`` (what the API passes), its role decides whether internal articles
        are searched: only for agents and editors. ``channel`` and ``client`` (an opaque
        caller identity) are logged with the search so that feedback on it can be
        attributed; ``log=False`` skips the feedback log. Personal data in the query is
        redacted (``content.redaction``) before it is embedded, logged or answered.
        ``synthetic`` marks a search that no person typed (kbsearch made it up to hold
        feedback): training leaves it out. A search that runs past ``deadline`` (by default
        KBSEARCH_SEARCH_TIME_LIMIT from now) is stopped with SearchTimeoutError.
        """
        started = time.perf_counter()
        deadline = deadline or Deadline.start(self.settings.search_time_limit)
        if caller is not None:
            params["visibility"] = caller.visibility
        request = check_search(self.settings, query, **params)  # type: ignore[arg-type]
        # personal data never reaches the model, the log or the answer
        request = dataclasses.replace(request, query=self.redactor.redact(request.query))
        if channel not in CHANNELS:
            raise QueryError("channel", f"{channel!r} is not one of {', '.join(CHANNELS)}")
        index = self.index()
        ranker = self.ranker()
        candidates, query_vector = self.gather(
            index, request, lambda: self.query_vector(request.query), ranker, deadline)
        hits = self.rank(candidates, request.mode, len(candidates.ids), ranker)
        shown = [index.articles[index.positions[hit.id]] for hit in hits]
        hits = one_per_family(hits, [family(a) for a in shown], [a.language for a in shown],
                              lambda: request.language or confident_language(request.query),
                              )[:request.k]
        visible = self._visible(index, request.visibility)
        results = []
        for hit in hits:
            article = index.article(index.positions[hit.id])
            others = tuple(index.articles[p] for p in index.families[family(article)]
                           if visible[p] and index.articles[p].id != article.id)
            results.append(Result(hit, article, article_snippet(article, request.query),
                                  others))
        search_id = uuid.uuid4().hex
        owner = (caller.key_id if caller is not None else None) or ""
        response = SearchResponse(
            search_id=search_id,
            query=request.query,
            took_ms=round((time.perf_counter() - started) * 1000, 2),
            index_version=index.version,
            results=tuple(results),
            model_version=ranker.version,
            feedback_token=self._token(search_id) if log and not owner else None,
        )
        if log:
            self._log(SearchLog(
                search_id=search_id, created=time.time(), query=request.query,
                language=request.language, channel=channel, client=client,
                index_version=index.version, model_version=ranker.version,
                feature_names=FEATURES, query_vector=np.asarray(query_vector, np.float32),
                results=tuple(
                    ShownResult(h.id, position, h.probability,
                                tuple(float(h.scores[f]) for f in FEATURES))
                    for position, h in enumerate(hits, start=1)
                ),
                synthetic=synthetic, owner=owner,
            ))
        return response

    def _token(self, search_id: str) -> str | None:
        """Return a search's feedback token; None (reported) when the secret is unusable."""
        try:
            return self.tokens.token(search_id)
        except ConfigError as exc:
            log.warning("search %s has no feedback token: %s", search_id, exc)
            return None

    def _log(self, search: SearchLog) -> None:
        """Log a search for training; a failing store is reported but never fails a search."""
        try:
            self.feedback.log_search(search)
        except (FeedbackStoreError, FeedbackError) as exc:
            log.warning("search %s not logged for feedback: %s", search.search_id, exc)

    def record_feedback(
        self, search_id: object, article_id: object, event: object, position: object = None,
        channel: object = "api", client: str = "", caller: Caller | None = None,
        token: object = None,
    ) -> FeedbackEvent:
        """Store one feedback event on a logged search; raise FeedbackError naming the field.

        Only the caller that made the search may: the same API key (``caller``), or its
        feedback ``token`` for a search made without a key. Raises UnknownSearchError for a
        search never logged or not made by this caller (one answer: it tells no one which
        searches exist), DuplicateFeedbackError for an event already stored.
        """
        for name, value in (("search_id", search_id), ("article_id", article_id),
                            ("event", event), ("channel", channel)):
            if not isinstance(value, str) or not value.strip():
                raise FeedbackError(name, "is required and must be a non-empty string")
        if event not in EVENTS:
            raise FeedbackError("event", f"{event!r} is not one of {', '.join(EVENTS)}")
        if position is not None and (isinstance(position, bool) or not isinstance(position, int)):
            raise FeedbackError("position", f"{position!r} is not a whole number")
        self.check_owner(str(search_id), caller, token)
        return self.feedback.add_event(FeedbackEvent(
            search_id=str(search_id), article_id=str(article_id), event=str(event),
            position=position, channel=str(channel), client=client,
        ))

    def check_owner(self, search_id: str, caller: Caller | None, token: object) -> None:
        """Raise UnknownSearchError unless this caller made the search (key or token)."""
        key_id = caller.key_id if caller is not None else None
        if self.tokens.made_by(self.feedback.get_search(search_id), key_id, token):
            return
        raise UnknownSearchError("search_id", f"no search {search_id!r} was logged for this "
                                 "caller: feedback is taken from the API key that searched, or "
                                 "with the feedback_token of a search made without a key")

    def article(
        self, article_id: str, visibility: str = "public", caller: Caller | None = None
    ) -> Article:
        """Return a published article visible at this level; raise ArticleNotFoundError.

        With a ``caller`` its role decides the level (internal for agents and editors).
        """
        visibility = caller.visibility if caller is not None else visibility
        index = self.index()
        position = index.positions.get(article_id)
        if position is None:
            raise ArticleNotFoundError(article_id)
        if not may_see(index.articles[position], visibility):
            raise ArticleNotFoundError(article_id)
        return index.article(position)

    def articles(
        self, visibility: str = "public", caller: Caller | None = None
    ) -> list[Article]:
        """Return every published article visible at this level, by category and title,
        without its Markdown (``body`` empty: :meth:`article` reads it).

        With a ``caller`` its role decides the level (internal for agents and editors).
        """
        visibility = caller.visibility if caller is not None else visibility
        index = self.index()
        return sorted(
            (a for a in index.articles if may_see(a, visibility)),
            key=lambda a: (a.category, a.title.lower()),
        )


def _days_overdue(article: Article, today: dt.date | None = None) -> float:
    """Return how many days an article is past its review date (0 if not, or no date)."""
    if article.review_by is None:
        return 0.0
    return float(max(0, ((today or dt.date.today()) - article.review_by).days))


def _empty_candidates() -> Candidates:
    empty = np.zeros(0)
    return Candidates((), empty, empty, empty, empty, empty, empty, empty.astype(int),
                      empty.astype(int))
