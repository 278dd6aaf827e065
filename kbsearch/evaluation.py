"""Offline evaluation on BEIR folders: metrics, calibration error, and candidate collection."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbsearch.analysis import detect_language
from kbsearch.articles import Article
from kbsearch.config import Settings
from kbsearch.embedding import Embedder
from kbsearch.errors import DatasetError
from kbsearch.indexer import build_from_articles
from kbsearch.ranking import MODES, Candidates
from kbsearch.service import SearchRequest, SearchService

METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "top1", "ece")
ECE_BINS = 10


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


def ndcg_at(ranking: Sequence[str], relevant: Mapping[str, int] | frozenset[str], k: int) -> float:
    """Return nDCG@k with binary gains (Järvelin & Kekäläinen 2002)."""
    dcg = sum(1.0 / math.log2(i + 2) for i, doc in enumerate(ranking[:k]) if doc in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def mrr_at(ranking: Sequence[str], relevant: Mapping[str, int] | frozenset[str], k: int) -> float:
    """Return the reciprocal rank of the first relevant document within the top k."""
    for i, doc in enumerate(ranking[:k]):
        if doc in relevant:
            return 1.0 / (i + 1)
    return 0.0


def recall_at(
    ranking: Sequence[str], relevant: Mapping[str, int] | frozenset[str], k: int
) -> float:
    """Return the share of relevant documents found in the top k."""
    return len(set(ranking[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


def expected_calibration_error(
    probabilities: Sequence[float], outcomes: Sequence[bool], bins: int = ECE_BINS
) -> float:
    """Return ECE over equal-width probability bins (Naeini et al., AAAI 2015)."""
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(outcomes, dtype=float)
    if len(p) == 0:
        return 0.0
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() / len(p) * abs(p[members].mean() - y[members].mean())
    return float(total)


def reliability(
    probabilities: Sequence[float], outcomes: Sequence[bool], bins: int = ECE_BINS
) -> list[tuple[float, float, int]]:
    """Return (mean probability, observed rate, count) per non-empty bin."""
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(outcomes, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    return [
        (float(p[which == b].mean()), float(y[which == b].mean()), int((which == b).sum()))
        for b in range(bins)
        if (which == b).any()
    ]


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
    service: SearchService, dataset: Dataset, progress: bool = False
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


def evaluate_judged(
    service: SearchService, judged: Sequence[Judged], modes: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Rank collected candidates in each mode and score them."""
    qrels = {j.query_id: dict.fromkeys(j.relevant, 1) for j in judged}
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        rankings = {
            j.query_id: [(h.id, h.probability) for h in service.rank(j.candidates, mode, 100)]
            for j in judged
        }
        results[mode] = score_rankings(rankings, qrels)
    return results


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
    modes: Sequence[str] = MODES,
    progress: bool = False,
) -> tuple[Dataset, dict[str, dict[str, float]]]:
    """Index a BEIR folder into a temporary index and return metrics per mode."""
    dataset = load_dataset(folder)
    with tempfile.TemporaryDirectory(prefix="kbsearch-eval-") as tmp:
        index_dir = Path(tmp)
        index_dataset(dataset, index_dir, embedder, settings, progress)
        service = SearchService(settings.replace(index=index_dir), embedder=embedder)
        judged = collect_candidates(service, dataset, progress)
        results = evaluate_judged(service, judged, modes)
        service.index().close()
    return dataset, results
