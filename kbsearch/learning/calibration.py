"""Calibration on a knowledge base's own judged queries, measured by cross-fitted ECE."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from kbsearch.config import SETTINGS, Settings
from kbsearch.learning.evaluation import Judgment, load_judgments
from kbsearch.learning.fitting import JudgedQuery, fit_calibration, query_folds
from kbsearch.learning.gaps import normal_text
from kbsearch.learning.metrics import expected_calibration_error
from kbsearch.learning.train import JudgedSource, TrainingError, TrainOutcome
from kbsearch.ranking.scoring import (
    Calibration,
    ModeModel,
    RankingModel,
    RankingWeights,
    TreeEnsemble,
    calibrate,
    scores,
)
from kbsearch.ranking.versions import DEFAULT_VERSION, Ranker, WeightsStore
from kbsearch.stores.feedback import FeedbackStore


def cross_fitted_ece(
    queries: Sequence[JudgedQuery], weights: RankingWeights | TreeEnsemble,
    fold_of: Sequence[int], fixed: Calibration | None = None, top: int = 10,
) -> float:
    """Return the ECE of each query's top results, calibrated on the other folds.

    ``fold_of`` gives each query's fold (:func:`query_folds`, as ``kbsearch eval
    --calibrate`` assigns them). With ``fixed`` the given calibration is scored instead (no
    refitting), on the same results.
    """
    probabilities: list[float] = []
    outcomes: list[bool] = []
    for fold in sorted(set(fold_of)):
        test = [q for q, f in zip(queries, fold_of, strict=True) if f == fold]
        train_part = [q for q, f in zip(queries, fold_of, strict=True) if f != fold]
        calibration = fixed or fit_calibration(train_part, weights)
        for query in test:
            s = scores(query.matrix, weights)
            p = calibrate(s, query.matrix, calibration)
            best = np.argsort(-s, kind="stable")[:top]
            probabilities += [float(v) for v in p[best]]
            outcomes += [bool(query.relevant[i] > 0) for i in best]
    return expected_calibration_error(probabilities, outcomes)


def judgments_file(settings: Settings) -> Path:
    """Return the knowledge base's judged queries: KBSEARCH_JUDGMENTS, whose default lies
    in the bundled articles folder, so a knowledge base elsewhere (KBSEARCH_ARTICLES) has
    its own ``judgments.tsv`` beside its articles."""
    default = settings.home / next(s.default for s in SETTINGS if s.name == "judgments")
    bundled = settings.home / next(s.default for s in SETTINGS if s.name == "articles")
    if settings.judgments == default and settings.articles != bundled:
        return settings.articles / default.name
    return settings.judgments


def calibration_stamp(judgments: Sequence[Judgment], manifest: Mapping[str, object]
                      ) -> dict[str, str]:
    """Return what a calibration on judged queries was made for: the judged queries (in
    any order) and what the features they were scored with depend on in the index build's
    manifest (the model, the parameters, the synonyms, every article's content), not its
    version: a reindex that changed nothing publishes a new version of the same index."""
    lines = sorted(f"{j.query}\t{','.join(sorted(j.relevant))}" for j in judgments)
    content = {key: manifest.get(key) for key in
               ("model", "parameters", "synonyms", "content_hashes")}
    return {"judgments_sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest(),
            "index_sha256": hashlib.sha256(json.dumps(content, sort_keys=True, default=str)
                                           .encode()).hexdigest()}


def agent_verdicts(feedback: FeedbackStore, known_ids: Iterable[str]) -> list[Judgment]:
    """Return the agents' verdicts as judged queries: searches made with an agent or
    editor key (channel ``agent``) whose results the same key marked ``resolved``.

    Feedback is accepted only from the key that searched, so these are an agent's own
    word that the article solved the customer's problem: trusted like a judgments.tsv
    line. Queries are joined by their words (case aside), their resolved articles
    united; articles the knowledge base no longer has are left out.
    """
    known = set(known_ids)
    resolved: dict[str, set[str]] = {}
    for event in feedback.events():
        if event.event == "resolved" and event.channel == "agent" and event.article_id in known:
            resolved.setdefault(event.search_id, set()).add(event.article_id)
    return merge_judgments([
        Judgment(" ".join(search.query.split()), frozenset(resolved[search.search_id]), 0)
        for search in feedback.searches()
        if search.search_id in resolved and search.channel == "agent" and not search.synthetic])


def knowledge_base_judgments(
    path: Path, feedback: FeedbackStore | None, known_ids: Sequence[str]
) -> tuple[list[Judgment], list[Judgment]]:
    """Return a knowledge base's judged queries: those of its judgments file (none when
    there is no file; DatasetError naming file and line for a bad one) and the agents'
    verdicts in ``feedback`` (none without a feedback store)."""
    from_file = load_judgments(path, known_ids) if path.is_file() else []
    verdicts = agent_verdicts(feedback, known_ids) if feedback is not None else []
    return from_file, verdicts


def merge_judgments(*sources: Sequence[Judgment]) -> list[Judgment]:
    """Join judged queries from several sources: one per query (words, case aside), the
    articles that solve it united; the first source's wording and line are kept."""
    merged: dict[str, Judgment] = {}
    for source in sources:
        for judgment in source:
            key = normal_text(judgment.query)
            seen = merged.get(key)
            merged[key] = judgment if seen is None else Judgment(
                seen.query, seen.relevant | judgment.relevant, seen.line)
    return list(merged.values())


def calibrated_for(weights: WeightsStore, stamp: Mapping[str, str]) -> str | None:
    """Return the weights version already calibrated for ``stamp`` (promoted or rejected),
    so that a reindex that changed nothing does not calibrate again; None if none was."""
    for info in reversed(weights.list()):
        if info.version == DEFAULT_VERSION:
            continue
        report = weights.document(info.version).get("report", {})
        if isinstance(report, dict) and report.get("calibrated_for") == dict(stamp):
            return info.version
    return None


def calibrate_on_judgments(
    weights: WeightsStore, judged: JudgedSource, folds: int = 5,
    stamp: Mapping[str, str] | None = None,
) -> TrainOutcome:
    """Refit the hybrid calibration on the judged queries alone; promote it if it is better.

    The current and the refitted calibration are compared by cross-fitted ECE over the
    judged queries (each fold calibrated on the others). The new version keeps the current
    weights, learned questions and helpfulness; ``stamp`` (:func:`calibration_stamp`) is
    kept in its report. Raises TrainingError when the judgments are too few to cross-fit.
    """
    current = weights.load()
    hybrid = current.model.for_mode("hybrid")
    found = [(key, q) for key, q in zip(judged.keys(), judged.queries(current), strict=True)
             if len(q.relevant)]
    queries = [q for _, q in found]
    labels = {float(v) > 0 for q in queries for v in q.relevant}
    if len(queries) < 2 * folds or labels != {True, False}:
        raise TrainingError(
            f"{len(queries)} judged queries are too few to calibrate on with {folds} folds"
        )
    fold_of = query_folds([key for key, _ in found], folds)
    before = cross_fitted_ece(queries, hybrid.weights, fold_of, fixed=hybrid.calibration)
    after = cross_fitted_ece(queries, hybrid.weights, fold_of)
    model = RankingModel(
        modes={**current.model.modes,
               "hybrid": ModeModel(hybrid.weights, fit_calibration(queries, hybrid.weights))},
        description=f"{current.model.description}; calibrated on {len(queries)} judged "
                    "queries",
    )
    report: dict[str, object] = {
        "judged_queries": len(queries),
        "ece_cross_fitted": {"current": round(before, 4), "new": round(after, 4)},
    }
    if stamp is not None:
        report["calibrated_for"] = dict(stamp)
    version = weights.save(Ranker("", model, current.questions, current.helpfulness),
                           current.version, report)
    if after > before:
        reason = (f"not promoted: the refitted calibration is worse (ECE {after:.4f} > "
                  f"{before:.4f})")
        weights.mark(version, "rejected", reason)
        return TrainOutcome(version, current.version, False, reason, report)
    reason = f"promoted: ECE {before:.4f} -> {after:.4f} on the judged queries"
    weights.promote(version, reason)
    return TrainOutcome(version, current.version, True, reason, report)
