"""Learning from feedback: logged searches and events → a new, offline-checked weights version.

The steps of ``kbsearch train``:

1. Read the searches that got feedback and hold out about a share of them by query: the
   searches of the queries first asked most recently (:func:`split_by_query`).
2. Turn each training search into a listwise example over the results it showed, with the
   features logged at search time. Gains: a click counts 1 / propensity of its position
   (inverse propensity weighting, Joachims et al., "Unbiased learning-to-rank with biased
   feedback", WSDM 2017; propensities from the logs by regression EM, clipped at
   ``max_ipw``); helpful and resolved count more; not helpful or escalated cancel the
   article's gain. A client's searches together weigh at most ``client_cap`` searches.
3. Fit the hybrid weights with the listwise loss, regularised towards the current weights
   with the strength of ``prior_searches`` searches, so a few events move little.
4. Compare new and current weights on the held-out searches (the logged results
   re-ranked, scored by their IPW gains: a counterfactual DCG); worse weights are dropped
   and the current ones kept.
5. Rebuild the learned questions and the helpfulness counts from all explicit feedback,
   one vote per client and article.
6. Refit the calibration to the score scale, on the knowledge base's judged queries and
   the current probabilities (see :func:`fit_feedback_calibration` for why explicit
   feedback is not used as a calibration label).
7. Check the version on the judged queries when given; store it, and make it current only
   if it is not worse there.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from kbsearch.config import Settings
from kbsearch.errors import KbsearchError
from kbsearch.learning.fitting import (
    JudgedQuery,
    estimate_propensities,
    fit_listwise,
    fit_platt,
    prior_weights,
)
from kbsearch.learning.gaps import normal_text
from kbsearch.ranking.memory import AnsweredQuestion, MemoryLimits, build_memory
from kbsearch.ranking.scoring import (
    FEATURES,
    Calibration,
    ModeModel,
    RankingModel,
    RankingWeights,
    TreeEnsemble,
    calibrate,
    scores,
)
from kbsearch.ranking.versions import Helpfulness, Ranker, WeightsStore
from kbsearch.stores.feedback import FeedbackEvent, FeedbackStore, SearchLog

POSITIVE = ("helpful", "resolved")
NEGATIVE = ("not_helpful", "escalated")


class JudgedSource(Protocol):
    """Judged queries of the knowledge base, retrieved against the live index."""

    def ndcg(self, ranker: Ranker) -> float:
        """Return the ranker's mean nDCG@10 over the judged queries."""
        ...

    def queries(self, ranker: Ranker) -> list[JudgedQuery]:
        """Return each judged query's candidates (features as the ranker sees them)."""
        ...

    def keys(self) -> list[str]:
        """Return each judged query's text, in the order of :meth:`queries`."""
        ...


class TrainingError(KbsearchError):
    """There is not enough usable feedback to train on."""


@dataclass(frozen=True)
class TrainOptions:
    """The knobs of feedback training (defaults come from the settings)."""

    holdout: float = 0.2
    min_searches: int = 20
    prior_searches: float = 200.0
    client_cap: float = 20.0
    max_ipw: float = 10.0
    gains: Mapping[str, float] = field(
        default_factory=lambda: {"helpful": 2.0, "resolved": 3.0}
    )
    tolerance: float = 0.002
    memory: MemoryLimits = MemoryLimits()
    now: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings, now: float | None = None) -> TrainOptions:
        """Return the options the ``train_*`` and ``question*`` settings describe."""
        return cls(
            holdout=settings.train_holdout,
            min_searches=settings.train_min_searches,
            prior_searches=settings.train_prior_searches,
            client_cap=settings.train_client_cap,
            memory=MemoryLimits(per_client=settings.questions_per_client,
                                floor=settings.question_floor),
            now=now,
        )


@dataclass(frozen=True)
class TrainOutcome:
    """What a training run produced and whether it became current."""

    version: str
    parent: str
    promoted: bool
    reason: str
    report: dict[str, Any]


@dataclass(frozen=True)
class Example:
    """One logged search as a training example."""

    search: SearchLog
    matrix: np.ndarray
    positions: np.ndarray
    clicks: np.ndarray
    gains: np.ndarray
    explicit: np.ndarray  # 1 solved, 0 not solved, nan no explicit feedback
    weight: float


def logged_matrix(search: SearchLog) -> np.ndarray:
    """Return the logged features of a search's results in the order of FEATURES.

    Features the log does not have (written by an older version) are 0.
    """
    columns = {name: i for i, name in enumerate(search.feature_names)}
    matrix = np.zeros((len(search.results), len(FEATURES)))
    for j, name in enumerate(FEATURES):
        if name in columns:
            matrix[:, j] = [r.features[columns[name]] for r in search.results]
    return matrix


def examples_from_logs(
    searches: Iterable[SearchLog],
    events: Iterable[FeedbackEvent],
    client_cap: float,
) -> list[Example]:
    """Join logged searches with their events; one example per search that got feedback.

    Synthetic searches (which no person typed) are left out: their query and ranking say
    nothing about what customers ask.
    """
    by_search: dict[str, list[FeedbackEvent]] = defaultdict(list)
    for event in events:
        if event.event != "impression":
            by_search[event.search_id].append(event)
    logged = [s for s in searches
              if s.search_id in by_search and s.results and not s.synthetic]
    per_client: defaultdict[str, int] = defaultdict(int)
    for search in logged:
        per_client[search.client] += 1
    examples = []
    for search in logged:
        ids = [r.article_id for r in search.results]
        clicks, explicit = np.zeros(len(ids)), np.full(len(ids), np.nan)
        solved, unsolved = np.zeros(len(ids)), np.zeros(len(ids))
        for event in by_search[search.search_id]:
            if event.article_id not in ids:
                continue
            i = ids.index(event.article_id)
            if event.event == "click":
                clicks[i] = 1.0
            elif event.event in POSITIVE:
                solved[i] = max(solved[i], 1.0)
            elif event.event in NEGATIVE:
                unsolved[i] = 1.0
        explicit[solved > 0] = 1.0
        explicit[unsolved > 0] = 0.0
        cap = 1.0 if not search.client else min(1.0, client_cap / per_client[search.client])
        examples.append(Example(
            search, logged_matrix(search), np.array([r.position for r in search.results]),
            clicks, np.zeros(len(ids)), explicit, cap,
        ))
    return examples


def with_gains(
    examples: Sequence[Example], events_by_search: Mapping[str, Sequence[FeedbackEvent]],
    propensity: np.ndarray, options: TrainOptions,
) -> list[Example]:
    """Return the examples with their gains: (click + explicit bonus) / propensity.

    Explicit feedback follows a click, so it is as position-biased as the click and gets
    the same inverse-propensity weight; a negative verdict zeroes the article's gain.
    """
    out = []
    for ex in examples:
        p = propensity[np.minimum(ex.positions, len(propensity)) - 1]
        gains = ex.clicks.copy()
        ids = [r.article_id for r in ex.search.results]
        for event in events_by_search.get(ex.search.search_id, ()):
            if event.event in options.gains and event.article_id in ids:
                gains[ids.index(event.article_id)] += options.gains[event.event]
        gains *= np.minimum(1.0 / np.maximum(p, 1e-9), options.max_ipw)
        gains[ex.explicit == 0.0] = 0.0
        out.append(Example(ex.search, ex.matrix, ex.positions, ex.clicks, gains, ex.explicit,
                           ex.weight))
    return out


def counterfactual_dcg(
    examples: Sequence[Example], weights: RankingWeights | TreeEnsemble
) -> np.ndarray:
    """Return, per search with gain, the normalised DCG of its results re-ranked by ``weights``.

    The gains are the IPW-corrected ones, so the mean estimates how the ranking would do on
    these searches without showing it to anyone (a counterfactual estimate).
    """
    values = []
    for ex in examples:
        if ex.gains.sum() <= 0:
            continue
        order = np.argsort(-scores(ex.matrix, weights), kind="stable")
        discount = 1.0 / np.log2(np.arange(2, len(order) + 2))
        ideal = np.sort(ex.gains)[::-1] @ discount
        values.append(float(ex.gains[order] @ discount / ideal))
    return np.array(values)


def split_by_query(
    examples: Sequence[Example], share: float
) -> tuple[list[Example], list[Example]]:
    """Split time-ordered examples into training and held-out ones, whole queries at a time.

    The held-out part takes the searches of the queries (folded) first asked most recently
    until it holds ``share`` of the searches (at least one); a query is never on both
    sides, and the training part keeps at least one. Users repeat popular questions, so a
    split by time alone held out searches of queries the new weights were fitted on: in
    simulation the check then passed weights that had learnt those queries by heart and
    did worse on new ones. With a single query, the newest share of its searches is held
    out.
    """
    wanted = max(1, int(round(len(examples) * share)))
    queries = [normal_text(example.search.query) for example in examples]
    count = Counter(queries)
    if len(count) < 2:
        cut = len(examples) - wanted
        return list(examples[:cut]), list(examples[cut:])
    held: set[str] = set()
    total = 0
    for query in reversed(count):  # a Counter keeps first-seen order: newest first here
        if total >= wanted or len(held) == len(count) - 1:
            break
        held.add(query)
        total += count[query]
    train_part = [ex for ex, query in zip(examples, queries, strict=True) if query not in held]
    held_out = [ex for ex, query in zip(examples, queries, strict=True) if query in held]
    return train_part, held_out


def worse(new: np.ndarray, current: np.ndarray, tolerance: float) -> bool:
    """Return whether ``new`` scores lower than ``current`` on the same searches.

    Worse means the mean paired difference is below ``-tolerance``. This is deliberately
    strict: in simulation, weights that were worse only within the noise of this estimate
    still lowered the ranking quality on new queries.
    """
    if len(new) == 0:
        return False
    return float((new - current).mean()) < -tolerance


def _starting_weights(model: ModeModel) -> RankingWeights:
    """Return the current linear weights, with prior coefficients for features they lack."""
    prior = dict(zip(prior_weights().features, prior_weights().coefficients, strict=True))
    if isinstance(model.weights, RankingWeights):
        prior.update(zip(model.weights.features, model.weights.coefficients, strict=True))
        intercept = model.weights.intercept
    else:
        intercept = 0.0
    return RankingWeights(tuple(prior), tuple(prior.values()), intercept)


def fit_feedback_calibration(
    examples: Sequence[Example], weights: RankingWeights | TreeEnsemble, current: ModeModel,
    judged: Sequence[JudgedQuery] = (), top: int = 20,
) -> Calibration:
    """Refit score → probability for new weights, on judged queries and the current model.

    Each logged result contributes the current model's probability as a soft label, so the
    calibration carries over to the new score scale. The knowledge base's judged queries
    (their ``top`` best candidates, labelled relevant or not) weigh as much again as all
    logged results together, so with judgments the calibration moves to this knowledge
    base. Explicit feedback is not used as a label: people only judge what they clicked, so
    its share of "helpful" overstates how often a shown article solves the query
    (selection bias), and fitting on it made the probabilities overconfident in simulation.
    """
    dense = FEATURES.index("dense")
    rows, labels, weight = [], [], []
    for ex in examples:
        s = scores(ex.matrix, weights)
        old = calibrate(scores(ex.matrix, current.weights), ex.matrix, current.calibration)
        top_dense = float(ex.matrix[:, dense].max())
        for i in range(len(s)):
            row = [s[i], s[i] - s.max(), top_dense]
            rows += [row, row]
            labels += [1, 0]
            weight += [old[i], 1 - old[i]]
    judged_rows = []
    for query in judged:
        if len(query.relevant) == 0:
            continue
        s = scores(query.matrix, weights)
        for i in np.argsort(-s, kind="stable")[:top]:
            judged_rows.append(([s[i], s[i] - s.max(), float(query.matrix[:, dense].max())],
                                int(query.relevant[i] > 0)))
    if judged_rows:
        share = max(1.0, sum(weight)) / len(judged_rows)
        for row, label in judged_rows:
            rows.append(row)
            labels.append(label)
            weight.append(share)
    return fit_platt(rows, labels, np.array(weight) + 1e-9)


def learned_state(
    searches: Mapping[str, SearchLog], events: Sequence[FeedbackEvent]
) -> tuple[Helpfulness, list[AnsweredQuestion]]:
    """Count helpful votes and collect answered questions, one verdict per client and article.

    A client's latest helpful / not helpful verdict on an article is its one vote; the
    queries with which a client found an article helpful become answered questions unless
    that client's latest verdict on the article is negative. A synthetic search's vote
    counts, but its query (which no person typed) never becomes an answered question.
    """
    verdicts: dict[tuple[str, str], tuple[float, bool]] = {}
    answered = []
    for event in sorted(events, key=lambda e: e.created):
        if event.event not in POSITIVE + NEGATIVE:
            continue
        voter = event.client or f"search:{event.search_id}"
        verdicts[(event.article_id, voter)] = (event.created, event.event in POSITIVE)
        search = searches.get(event.search_id)
        if (event.event in POSITIVE and search is not None and not search.synthetic
                and search.query_vector.size):
            answered.append(AnsweredQuestion(event.article_id, search.query_vector, voter,
                                             event.created))
    answered = [a for a in answered if verdicts[(a.article_id, a.client)][1]]
    counts: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for (article, _), (_, up) in verdicts.items():
        counts[article][0 if up else 1] += 1.0
    total_up = sum(c[0] for c in counts.values())
    total = sum(c[0] + c[1] for c in counts.values())
    mean = (total_up + 1.0) / (total + 2.0)
    return Helpfulness({a: (c[0], c[1]) for a, c in counts.items()}, mean, 10.0), answered


def _debiased(
    examples: list[Example], events: Sequence[FeedbackEvent], options: TrainOptions
) -> tuple[list[Example], np.ndarray]:
    """Estimate click propensities per position; return the examples with gains, by time."""
    clicked = [ex for ex in examples if ex.clicks.any()]
    if clicked:
        propensity = estimate_propensities(
            np.concatenate([ex.positions for ex in clicked]),
            np.concatenate([ex.clicks for ex in clicked]),
            np.vstack([ex.matrix for ex in clicked]),
        )
    else:
        propensity = np.ones(1)
    by_search: dict[str, list[FeedbackEvent]] = defaultdict(list)
    for event in events:
        by_search[event.search_id].append(event)
    examples = with_gains(examples, by_search, propensity, options)
    examples.sort(key=lambda ex: (ex.search.created, ex.search.search_id))
    return examples, propensity


def train(
    store: FeedbackStore,
    weights: WeightsStore,
    options: TrainOptions,
    judged: JudgedSource | None = None,
) -> TrainOutcome:
    """Train a new weights version from the feedback store; promote it if it is not worse.

    ``judged`` gives the knowledge base's judged queries (its judgments file): their
    candidates join the calibration as labelled data, and their nDCG@10 takes part in
    the promotion decision. Raises TrainingError when fewer than
    ``options.min_searches`` searches have feedback.
    """
    import time

    now = options.now if options.now is not None else time.time()
    events = list(store.events())
    searches = {s.search_id: s for s in store.searches()}
    examples = examples_from_logs(searches.values(), events, options.client_cap)
    if len(examples) < options.min_searches:
        raise TrainingError(
            f"only {len(examples)} searches have feedback; training needs at least "
            f"{options.min_searches} (KBSEARCH_TRAIN_MIN_SEARCHES)"
        )
    examples, propensity = _debiased(examples, events, options)
    train_part, held_out = split_by_query(examples, options.holdout)

    current = weights.load()
    hybrid = current.model.for_mode("hybrid")
    start = _starting_weights(hybrid)
    queries = [JudgedQuery(ex.matrix, ex.gains, ex.weight) for ex in train_part]
    total = sum(q.weight for q in queries if q.relevant.sum() > 0)
    if total == 0:
        raise TrainingError("no training search has a click or positive feedback to learn from")
    fitted = fit_listwise(queries, FEATURES, options.prior_searches / total, start)
    held_current = counterfactual_dcg(held_out, hybrid.weights)
    held_new = counterfactual_dcg(held_out, fitted)
    kept_weights = worse(held_new, held_current, options.tolerance)
    # worse weights on held-out feedback are not used; the version still renews the
    # learned questions, helpfulness and calibration
    new_weights = hybrid.weights if kept_weights else fitted
    helpfulness, answered = learned_state(searches, events)
    questions = build_memory(answered, now, options.memory)
    state = Ranker("", current.model, questions, helpfulness)
    judged_rows = judged.queries(state) if judged is not None else []
    calibration = fit_feedback_calibration(train_part, new_weights, hybrid, judged_rows)
    model = RankingModel(
        modes={**current.model.modes, "hybrid": ModeModel(new_weights, calibration)},
        description=(f"Trained from feedback: {len(train_part)} searches, parent "
                     f"{current.version}" + ("; current weights kept" if kept_weights else "")),
    )
    ranker = Ranker("", model, questions, helpfulness)
    report: dict[str, Any] = {
        "searches_with_feedback": len(examples),
        "train_searches": len(train_part),
        "held_out_searches": len(held_out),
        "events": len(events),
        "propensity": [round(float(p), 4) for p in propensity],
        "learned_questions": len(questions),
        "held_out_dcg": {
            "current": round(float(held_current.mean()), 4) if len(held_current) else None,
            "new": round(float(held_new.mean()), 4) if len(held_new) else None,
        },
        "weights": "kept current (new ones worse on held-out feedback)" if kept_weights
        else "new",
        "calibration_judged_queries": len(judged_rows),
    }
    return _decide(weights, current, ranker, report, judged, options.tolerance, kept_weights)


def _decide(
    weights: WeightsStore, current: Ranker, ranker: Ranker, report: dict[str, Any],
    judged: JudgedSource | None, tolerance: float, kept_weights: bool,
) -> TrainOutcome:
    """Save the new version; promote it unless it is worse on the judged queries."""
    if judged is not None:
        figures = {"current": round(judged.ndcg(current), 4),
                   "new": round(judged.ndcg(ranker), 4)}
        report["judged_ndcg@10"] = figures
        if figures["new"] < figures["current"] - tolerance:
            version = weights.save(ranker, current.version, report)
            reason = ("not promoted: worse than the current version on judged nDCG@10 "
                      f"({figures['new']:.4f} < {figures['current']:.4f})")
            weights.mark(version, "rejected", reason)
            return TrainOutcome(version, current.version, False, reason, report)
    version = weights.save(ranker, current.version, report)
    reason = "promoted: not worse than the current version on any offline check" + (
        "; the ranking weights stay the current ones, which did better on held-out "
        "feedback" if kept_weights else "")
    weights.promote(version, reason)
    return TrainOutcome(version, current.version, True, reason, report)
