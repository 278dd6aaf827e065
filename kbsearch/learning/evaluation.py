"""Offline evaluation on BEIR folders: metrics, calibration error, and candidate collection."""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from kbsearch.config import Settings
from kbsearch.content.analysis import detect_language
from kbsearch.content.articles import Article
from kbsearch.errors import DatasetError
from kbsearch.index.builds import LoadedIndex, build_from_articles
from kbsearch.index.embedding import Embedder
from kbsearch.index.retrieval import SearchRequest
from kbsearch.learning.fitting import JudgedQuery, fit_calibration, judged_query, query_folds
from kbsearch.learning.metrics import (
    expected_calibration_error,
    mrr_at,
    ndcg_at,
    recall_at,
    reliability,
)
from kbsearch.ranking.scoring import MODES, Candidates, Hit, ModeModel, RankingModel, rank_mode
from kbsearch.ranking.versions import Ranker

SearcherFactory = Callable[[Settings, Embedder], "Searcher"]
METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "top1", "ece")


class Searcher(Protocol):
    """What evaluation needs of a search service (``kbsearch.service.SearchService``)."""

    @property
    def embedder(self) -> Embedder:
        """The embedding model."""
        ...

    @property
    def ranking(self) -> RankingModel:
        """The ranking model in use."""
        ...

    def index(self) -> LoadedIndex:
        """Return the current build."""
        ...

    def candidates(
        self, index: LoadedIndex, request: SearchRequest, query_vector: np.ndarray,
        ranker: Ranker | None = None,
    ) -> Candidates:
        """Collect both retrievers' candidates with their raw scores."""
        ...

    def rank(
        self, candidates: Candidates, mode: str, k: int, ranker: Ranker | None = None
    ) -> list[Hit]:
        """Order candidates for a mode."""
        ...


@dataclass(frozen=True)
class Dataset:
    """A BEIR folder: documents, queries and relevance judgments."""

    name: str
    documents: tuple[Article, ...]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Judged:
    """One query's candidates with the judged relevance of each."""

    query_id: str
    candidates: Candidates
    relevant: frozenset[str]


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict]]:
    if not path.exists():
        raise DatasetError(f"{path} is missing (a BEIR folder has corpus.jsonl, "
                           "queries.jsonl and qrels.tsv)")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict) or "_id" not in record:
                raise DatasetError(f"{path}:{number}: a line needs an '_id'")
            yield number, record


def load_dataset(folder: Path) -> Dataset:
    """Read a BEIR folder; detect each text's language when the folder does not give it."""
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist")
    documents = []
    for number, record in _read_jsonl(folder / "corpus.jsonl"):
        text = str(record.get("text") or "").strip()
        title = str(record.get("title") or "").strip()
        if not text and not title:
            raise DatasetError(f"{folder / 'corpus.jsonl'}:{number}: document has no text")
        language = record.get("language") or detect_language(f"{title}\n{text[:500]}")
        documents.append(
            Article(
                id=str(record["_id"]),
                title=title,
                language=language if language in ("de", "en") else "en",
                category="eval",
                body=text or title,
                content_hash=hashlib.sha256(f"{title}\n{text}".encode()).hexdigest(),
            )
        )
    queries = {
        str(r["_id"]): str(r.get("text") or "").strip()
        for _, r in _read_jsonl(folder / "queries.jsonl")
    }
    qrels_path = folder / "qrels.tsv"
    if not qrels_path.exists():
        raise DatasetError(f"{qrels_path} is missing")
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for number, row in enumerate(reader, start=1):
            if number == 1 and row and not row[-1].strip().lstrip("-").isdigit():
                continue  # header
            if len(row) < 3:
                raise DatasetError(f"{qrels_path}:{number}: expected query-id, corpus-id, score")
            try:
                score = int(row[2])
            except ValueError:
                raise DatasetError(
                    f"{qrels_path}:{number}: score {row[2]!r} is no number"
                ) from None
            if score > 0:
                qrels.setdefault(row[0], {})[row[1]] = score
    judged = {q: t for q, t in queries.items() if q in qrels and t}
    if not judged:
        raise DatasetError(f"{folder}: no query has a relevance judgment")
    return Dataset(folder.name, tuple(documents), judged, qrels)


def score_rankings(
    rankings: Mapping[str, Sequence[tuple[str, float]]], qrels: Mapping[str, Mapping[str, int]]
) -> dict[str, float]:
    """Average the metrics over queries; ECE uses the probabilities of each top 10."""
    per_metric: dict[str, list[float]] = {m: [] for m in METRICS if m != "ece"}
    probs: list[float] = []
    outcomes: list[bool] = []
    for query_id, ranked in rankings.items():
        relevant = qrels[query_id]
        ids = [doc for doc, _ in ranked]
        per_metric["ndcg@10"].append(ndcg_at(ids, relevant, 10))
        per_metric["mrr@10"].append(mrr_at(ids, relevant, 10))
        per_metric["recall@10"].append(recall_at(ids, relevant, 10))
        per_metric["recall@100"].append(recall_at(ids, relevant, 100))
        per_metric["top1"].append(1.0 if ids and ids[0] in relevant else 0.0)
        for doc, probability in ranked[:10]:
            probs.append(probability)
            outcomes.append(doc in relevant)
    result = {m: float(np.mean(v)) if v else 0.0 for m, v in per_metric.items()}
    result["ece"] = expected_calibration_error(probs, outcomes)
    return result


def collect_candidates(
    service: Searcher, dataset: Dataset, progress: bool = False
) -> list[Judged]:
    """Retrieve candidates for every judged query against the service's current index."""
    index = service.index()
    ids = list(dataset.queries)
    vectors = service.embedder.embed_queries([dataset.queries[q] for q in ids])
    judged: list[Judged] = []
    iterator: Iterable[int] = range(len(ids))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="queries", unit="q")
    for i in iterator:
        request = SearchRequest(query=dataset.queries[ids[i]], k=100)
        candidates = service.candidates(index, request, vectors[i])
        judged.append(Judged(ids[i], candidates, frozenset(dataset.qrels[ids[i]])))
    return judged


@dataclass(frozen=True)
class ModeResult:
    """One mode's figures and the (probability, solved) pairs its ECE was computed from."""

    metrics: dict[str, float]
    probabilities: tuple[float, ...]
    outcomes: tuple[bool, ...]


def mode_models(
    service: Searcher, judged: Sequence[Judged], mode: str, calibrate_folds: int
) -> list[ModeModel]:
    """Return the model that ranks each judged query in a mode.

    With ``calibrate_folds`` >= 2 the scorer stays as loaded but the calibration of each
    query is refitted on the other folds of the same set (cross-fitting), so no
    probability is scored on judgments it was fitted on.
    """
    model = service.ranking.for_mode(mode)
    if calibrate_folds < 2:
        return [model] * len(judged)
    fold_of = query_folds([j.query_id for j in judged], calibrate_folds)
    queries = [_shown_in_mode(judged_query(j.candidates, j.relevant), j.candidates, mode)
               for j in judged]
    per_fold = {}
    for fold in set(fold_of):
        train = [q for q, f in zip(queries, fold_of, strict=True) if f != fold]
        labels = {float(v) for q in train for v in q.relevant}
        if labels != {0.0, 1.0}:
            raise DatasetError(
                f"too few judged queries to cross-fit the calibration over {calibrate_folds} "
                "folds: a fold's training part needs relevant and non-relevant results; "
                "use fewer folds or more queries"
            )
        per_fold[fold] = ModeModel(model.weights, fit_calibration(train, model.weights))
    return [per_fold[f] for f in fold_of]


def _shown_in_mode(query: JudgedQuery, candidates: Candidates, mode: str) -> JudgedQuery:
    """Keep the candidates a mode can show: all for hybrid, one retriever's own otherwise."""
    if mode == "hybrid":
        return query
    keep = (candidates.dense_rank if mode == "dense" else candidates.keyword_rank) >= 0
    return JudgedQuery(query.matrix[keep], query.relevant[keep], query.weight)


def evaluate_judged(
    service: Searcher, judged: Sequence[Judged], modes: Sequence[str],
    calibrate_folds: int = 0,
) -> dict[str, ModeResult]:
    """Rank collected candidates in each mode and score them."""
    qrels = {j.query_id: dict.fromkeys(j.relevant, 1) for j in judged}
    results: dict[str, ModeResult] = {}
    for mode in modes:
        models = mode_models(service, judged, mode, calibrate_folds)
        rankings = {
            j.query_id: [(h.id, h.probability) for h in rank_mode(j.candidates, mode, m, 100)]
            for j, m in zip(judged, models, strict=True)
        }
        pairs = [(p, doc in qrels[q]) for q, ranked in rankings.items() for doc, p in ranked[:10]]
        results[mode] = ModeResult(
            score_rankings(rankings, qrels),
            tuple(p for p, _ in pairs),
            tuple(y for _, y in pairs),
        )
    return results


def plot_reliability(results: Mapping[str, ModeResult], title: str, path: Path) -> None:
    """Draw a reliability diagram (observed rate against probability, per mode) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(6, 7), height_ratios=(3, 1), sharex=True, layout="constrained"
    )
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    for mode, result in results.items():
        bins = reliability(result.probabilities, result.outcomes)
        top.plot([b[0] for b in bins], [b[1] for b in bins], marker="o",
                 label=f"{mode} (ECE {result.metrics['ece']:.3f})")
        bottom.bar([b[0] for b in bins], [b[2] for b in bins], width=0.03, alpha=0.6,
                   label=mode)
    top.set(ylabel="share that solves the query", xlim=(0, 1), ylim=(0, 1), title=title)
    top.legend(loc="upper left")
    bottom.set(xlabel="probability shown (top 10 of each query)", ylabel="results")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def index_dataset(
    dataset: Dataset, index_dir: Path, embedder: Embedder, settings: Settings,
    progress: bool = False,
) -> None:
    """Index a dataset's documents into ``index_dir`` (a throwaway folder)."""
    build_from_articles(
        list(dataset.documents), index_dir, embedder,
        chunk_tokens=settings.chunk_tokens, exact_limit=settings.exact_limit, progress=progress,
    )


def run_eval(
    folder: Path,
    settings: Settings,
    embedder: Embedder,
    searcher: SearcherFactory,
    modes: Sequence[str] = MODES,
    progress: bool = False,
    calibrate_folds: int = 0,
) -> tuple[Dataset, dict[str, ModeResult]]:
    """Index a BEIR folder into a temporary index and return the results per mode.

    ``searcher`` makes the search service over that index from settings and the embedder
    (``SearchService`` itself: evaluation sits below the service and does not import it).
    """
    dataset = load_dataset(folder)
    with tempfile.TemporaryDirectory(prefix="kbsearch-eval-") as tmp:
        index_dir = Path(tmp)
        index_dataset(dataset, index_dir, embedder, settings, progress)
        service = searcher(settings.replace(index=index_dir), embedder)
        judged = collect_candidates(service, dataset, progress)
        results = evaluate_judged(service, judged, modes, calibrate_folds)
        service.index().close()
    return dataset, results


@dataclass(frozen=True)
class Judgment:
    """One judged query of a knowledge base and the articles that solve it."""

    query: str
    relevant: frozenset[str]
    line: int


def load_judgments(path: Path, known_ids: Iterable[str] | None = None) -> list[Judgment]:
    """Read ``query<TAB>id[,id...]`` lines (``#`` starts a comment); raise DatasetError.

    Errors name the file and line: a line without a tab, without ids, or (when
    ``known_ids`` is given) naming an article the knowledge base does not have.
    """
    known = set(known_ids) if known_ids is not None else None
    judgments = []
    try:
        lines = path.read_text("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        query, tab, ids = line.partition("\t")
        relevant = frozenset(i.strip() for i in ids.split(",") if i.strip())
        if not tab or not query.strip() or not relevant:
            raise DatasetError(f"{path}:{number}: expected 'query<TAB>article-id[,id...]'")
        if known is not None and relevant - known:
            raise DatasetError(
                f"{path}:{number}: unknown article id(s) {', '.join(sorted(relevant - known))}"
            )
        judgments.append(Judgment(" ".join(query.split()), relevant, number))
    return judgments


class JudgedQueries:
    """A knowledge base's judged queries against the live index (for ``kbsearch train``).

    Query embeddings are computed once; each call retrieves with the given ranker, so its
    learned questions and helpfulness take part.
    """

    def __init__(self, service: Searcher, judgments: Sequence[Judgment]) -> None:
        """Embed the judged queries once."""
        self.service = service
        self.judgments = list(judgments)
        self.vectors = service.embedder.embed_queries([j.query for j in self.judgments])

    def _candidates(self, ranker: Ranker) -> Iterable[tuple[Judgment, Candidates]]:
        index = self.service.index()
        for judgment, vector in zip(self.judgments, self.vectors, strict=True):
            request = SearchRequest(query=judgment.query, k=10, visibility="internal")
            yield judgment, self.service.candidates(index, request, vector, ranker)

    def ndcg(self, ranker: Ranker) -> float:
        """Return the ranker's mean nDCG@10 over the judged queries."""
        values = [
            ndcg_at([h.id for h in self.service.rank(c, "hybrid", 10, ranker)], j.relevant, 10)
            for j, c in self._candidates(ranker)
        ]
        return float(np.mean(values)) if values else 0.0

    def queries(self, ranker: Ranker) -> list[JudgedQuery]:
        """Return each judged query's candidates with their relevance, as training rows."""
        return [judged_query(c, j.relevant) for j, c in self._candidates(ranker)]

    def keys(self) -> list[str]:
        """Return each judged query's text, in the order of :meth:`queries`."""
        return [j.query for j in self.judgments]
