"""Feedback training on synthetic logs: propensities, gains, promotion and bounded influence.

These tests build feedback logs directly (no embedding model): each search shows ten
articles with random retrieval features, ranked by the shipped weights, and simulated users
click by a position-based model on the article that is truly relevant.
"""

import dataclasses

import numpy as np
import pytest

from kbsearch.learning.fitting import JudgedQuery, estimate_propensities
from kbsearch.learning.train import (
    Example,
    TrainingError,
    TrainOptions,
    counterfactual_dcg,
    examples_from_logs,
    fit_feedback_calibration,
    learned_state,
    split_by_query,
    train,
    with_gains,
    worse,
)
from kbsearch.ranking.scoring import (
    FEATURES,
    Candidates,
    calibrate,
    feature_matrix,
    load_ranking_model,
    rank,
    scores,
)
from kbsearch.ranking.versions import DEFAULT_VERSION, WeightsStore
from kbsearch.stores.feedback import FeedbackEvent, SearchLog, ShownResult
from kbsearch.stores.feedback_sqlite import SQLiteFeedbackStore

MODEL = load_ranking_model().for_mode("hybrid")
NOW = 1_700_000_000.0


def random_candidates(rng: np.random.Generator, n: int = 30) -> tuple[Candidates, str]:
    """Random retrieval scores over articles a0..a{n-1}; the relevant one has the best title."""
    ids = tuple(f"a{i}" for i in range(n))
    dense = rng.uniform(0.75, 0.9, n)
    title = rng.uniform(0.7, 0.9, n)
    bm25 = rng.uniform(0, 10, n)
    candidates = Candidates(
        ids=ids, dense=dense, title_sim=title, bm25=bm25, bm25_title=bm25 * rng.random(n),
        bm25_body=bm25 * rng.random(n), coverage=rng.random(n),
        dense_rank=np.argsort(np.argsort(-dense)), keyword_rank=np.argsort(np.argsort(-bm25)),
    )
    return candidates, ids[int(np.argmax(title))]


def log_search(store, rng, search_id: str, client: str, created: float) -> tuple[SearchLog, str]:
    candidates, relevant = random_candidates(rng)
    hits = rank(candidates, MODEL, 10)
    search = SearchLog(
        search_id=search_id, created=created, query=f"query {search_id}", language="de",
        channel="faq", client=client, index_version="v", model_version=DEFAULT_VERSION,
        feature_names=FEATURES, query_vector=rng.normal(size=8).astype(np.float32),
        results=tuple(ShownResult(h.id, p, h.probability, tuple(h.scores[f] for f in FEATURES))
                      for p, h in enumerate(hits, start=1)),
    )
    store.log_search(search)
    return search, relevant


def simulate(store, rng, searches: int, start: int = 0, client_prefix: str = "user") -> None:
    """Position-based clicks (examination 1/position) on the truly relevant article."""
    for n in range(start, start + searches):
        search, relevant = log_search(store, rng, f"s{n}", f"{client_prefix}{n}", NOW + n)
        for shown in search.results:
            if rng.random() < 1.0 / shown.position:
                good = shown.article_id == relevant
                if rng.random() < (0.9 if good else 0.05):
                    store.add_event(FeedbackEvent(search.search_id, shown.article_id, "click",
                                                  None, "faq", search.client, NOW + n))
                    if good:
                        store.add_event(FeedbackEvent(search.search_id, shown.article_id,
                                                      "helpful", None, "faq", search.client,
                                                      NOW + n))


@pytest.fixture
def store(tmp_path):
    with SQLiteFeedbackStore(tmp_path / "feedback.sqlite3") as opened:
        yield opened


def test_propensities_are_recovered_from_position_biased_clicks():
    rng = np.random.default_rng(3)
    sessions, depth = 4000, 10
    features = rng.normal(size=(sessions * depth, 2))
    positions = np.tile(np.arange(1, depth + 1), sessions)
    relevant = rng.random(sessions * depth) < 1 / (1 + np.exp(-2 * features[:, 0]))
    examined = rng.random(sessions * depth) < 1.0 / positions
    clicks = (examined & relevant).astype(float)
    estimated = estimate_propensities(positions, clicks, features)
    assert estimated[0] == 1.0
    assert np.allclose(estimated[:5], 1.0 / np.arange(1, 6), atol=0.06)
    assert np.all(np.diff(estimated) <= 0)


def test_gains_weigh_clicks_by_inverse_propensity_and_verdicts(store):
    rng = np.random.default_rng(0)
    search, _ = log_search(store, rng, "s1", "c1", NOW)
    ids = [r.article_id for r in search.results]
    for article, event in [(ids[0], "click"), (ids[2], "click"), (ids[2], "helpful"),
                           (ids[1], "click"), (ids[1], "not_helpful")]:
        store.add_event(FeedbackEvent("s1", article, event, None, "faq", "c1", NOW))
    (example,) = examples_from_logs(store.searches(), store.events(), client_cap=20)
    events = {"s1": list(store.events())}
    (gained,) = with_gains([example], events, np.array([1.0, 0.5, 0.25]), TrainOptions())
    assert gained.gains[0] == pytest.approx(1.0)
    assert gained.gains[1] == 0.0  # clicked, then said not helpful
    assert gained.gains[2] == pytest.approx((1.0 + 2.0) / 0.25)
    assert gained.gains[3:].sum() == 0.0
    assert gained.explicit[1] == 0.0 and gained.explicit[2] == 1.0
    assert np.isnan(gained.explicit[0])


def test_worse_compares_paired_means_with_a_tolerance():
    current = np.array([0.5, 0.7, 0.9, 1.0])
    assert not worse(current, current, 0.002)
    assert not worse(current - 0.001, current, 0.002)
    assert worse(current - 0.01, current, 0.002)
    assert not worse(current + 0.05, current, 0.002)
    assert not worse(np.array([]), np.array([]), 0.002)


def test_judged_queries_pull_the_calibration_towards_what_they_show(store):
    rng = np.random.default_rng(2)
    simulate(store, rng, 60)
    examples = examples_from_logs(store.searches(), store.events(), client_cap=20)
    alone = fit_feedback_calibration(examples, MODEL.weights, MODEL)
    # judged queries in which the model's first candidate always solves the query, and no
    # other does
    judged = []
    for _ in range(40):
        candidates, _ = random_candidates(rng)
        matrix = feature_matrix(candidates)
        relevant = np.zeros(30)
        relevant[np.argmax(scores(matrix, MODEL.weights))] = 1.0
        judged.append(JudgedQuery(matrix, relevant))
    sharper = fit_feedback_calibration(examples, MODEL.weights, MODEL, judged)
    matrix = examples[0].matrix
    score = scores(matrix, MODEL.weights)
    before, after = calibrate(score, matrix, alone), calibrate(score, matrix, sharper)
    assert after[0] > before[0] and np.all(after[2:] < before[2:])
    # without judgments the refit reproduces the current probabilities closely
    current = calibrate(score, matrix, MODEL.calibration)
    assert np.abs(calibrate(score, matrix, alone) - current).max() < 0.05


def test_helpfulness_counts_one_latest_verdict_per_client_and_article(store):
    rng = np.random.default_rng(4)
    searches = {}
    for n, client in enumerate(["ann", "ann", "bob", "cy"]):
        search, _ = log_search(store, rng, f"s{n}", client, NOW + n)
        searches[search.search_id] = search
    article = searches["s0"].results[0].article_id
    events = [
        FeedbackEvent("s0", article, "helpful", 1, "faq", "ann", NOW),
        FeedbackEvent("s1", article, "resolved", 1, "faq", "ann", NOW + 1),  # same client
        FeedbackEvent("s2", article, "helpful", 1, "faq", "bob", NOW + 2),
        FeedbackEvent("s2", article, "not_helpful", 1, "faq", "bob", NOW + 3),  # changed mind
        FeedbackEvent("s3", article, "escalated", 1, "faq", "cy", NOW + 4),
    ]
    helpfulness, answered = learned_state(searches, events)
    assert helpfulness.counts[article] == (1.0, 2.0)  # ann up; bob and cy down
    assert {a.client for a in answered} == {"ann"}  # bob's latest verdict is negative
    assert len(answered) == 2 and helpfulness.prior_mean == pytest.approx(2 / 5)


def logged_example(number: int, query: str) -> Example:
    search = SearchLog(f"s{number}", NOW + number, query, "de", "faq", f"u{number}", "v1",
                       "m1", (), np.zeros(4, dtype=np.float32), ())
    empty = np.zeros(0)
    return Example(search, np.zeros((0, 1)), empty, empty, empty, empty, 1.0)


def test_held_out_searches_are_whole_queries_first_asked_most_recently():
    asked = ["Zählerstand melden", "Umzug", "zählerstand  MELDEN", "Tarif", "Umzug",
             "Rechnung", "Tarif", "Zählerstand melden", "Rechnung", "Rechnung"]
    examples = [logged_example(n, query) for n, query in enumerate(asked)]
    train_part, held_out = split_by_query(examples, 0.2)
    # "Rechnung" was first asked last: all three of its searches, none in training
    assert [ex.search.query for ex in held_out] == ["Rechnung"] * 3
    assert len(train_part) == 7 and "Rechnung" not in {ex.search.query for ex in train_part}
    train_part, held_out = split_by_query(examples, 0.5)  # folded: one query, two spellings
    assert {ex.search.query for ex in held_out} == {"Rechnung", "Tarif"}
    assert len(held_out) == 5 and len(train_part) == 5
    everything = split_by_query(examples, 1.0)  # training keeps at least one query
    assert {ex.search.query.casefold().split()[0] for ex in everything[0]} == {"zählerstand"}
    alone = [logged_example(n, "Umzug") for n in range(5)]
    train_part, held_out = split_by_query(alone, 0.2)  # a single query: split by time
    assert [ex.search.search_id for ex in held_out] == ["s4"] and len(train_part) == 4


def test_training_needs_enough_feedback(store, tmp_path):
    simulate(store, np.random.default_rng(0), 5)
    with pytest.raises(TrainingError, match="at least 20"):
        train(store, WeightsStore(tmp_path / "w"), TrainOptions(now=NOW))


def test_training_writes_a_version_and_promotes_it(store, tmp_path):
    simulate(store, np.random.default_rng(0), 400)
    weights = WeightsStore(tmp_path / "w")
    outcome = train(store, weights, TrainOptions(now=NOW + 500))
    assert outcome.parent == DEFAULT_VERSION
    assert outcome.report["train_searches"] + outcome.report["held_out_searches"] == (
        outcome.report["searches_with_feedback"])
    assert outcome.report["propensity"][0] == 1.0
    document = weights.document(outcome.version)
    assert document["status"] == ("promoted" if outcome.promoted else "rejected")
    if outcome.promoted:
        assert weights.current_version() == outcome.version
    ranker = weights.load(outcome.version)
    # every helpful vote came from a different client; the relevant articles gained
    assert sum(p for p, _ in ranker.helpfulness.counts.values()) > 100
    assert len(ranker.questions) > 100


@pytest.mark.slow  # two trainings on 1300 logged searches
def test_one_client_flooding_a_wrong_article_moves_the_ranking_a_bounded_amount(
    store, tmp_path
):
    rng = np.random.default_rng(5)
    simulate(store, rng, 300)
    clean = train(store, WeightsStore(tmp_path / "clean"), TrainOptions(now=NOW + 5000))
    # mallory searches 1000 times and clicks "helpful" on the last result each time
    for n in range(1000):
        search, _ = log_search(store, rng, f"m{n}", "mallory", NOW + 400 + n)
        wrong = search.results[-1].article_id
        store.add_event(FeedbackEvent(search.search_id, wrong, "click", None, "faq",
                                      "mallory", NOW + 400 + n))
        store.add_event(FeedbackEvent(search.search_id, wrong, "helpful", None, "faq",
                                      "mallory", NOW + 400 + n))
    attacked_store = WeightsStore(tmp_path / "attacked")
    attacked = train(store, attacked_store, TrainOptions(now=NOW + 5000))
    clean_model = WeightsStore(tmp_path / "clean").load(clean.version)
    attacked_model = attacked_store.load(attacked.version)

    # her 1000 searches weigh as much as client_cap (20) searches of other users
    organic = examples_from_logs(
        [s for s in store.searches() if s.client != "mallory"], store.events(), 20
    )
    events = {}
    for event in store.events():
        events.setdefault(event.search_id, []).append(event)
    organic = with_gains(organic, events, np.ones(10), TrainOptions())
    clean_dcg = counterfactual_dcg(organic, clean_model.model.for_mode("hybrid").weights)
    attacked_dcg = counterfactual_dcg(organic, attacked_model.model.for_mode("hybrid").weights)
    assert abs(attacked_dcg.mean() - clean_dcg.mean()) < 0.02

    # she planted at most `per_client` (1) question on each of the 30 articles, at
    # half weight at most, and cast one helpful vote per article
    assert len(attacked_model.questions) - len(clean_model.questions) <= 30
    assert attacked_model.questions.weights.max() <= 0.5 + 1e-9
    for article, (up, _) in attacked_model.helpfulness.counts.items():
        before = clean_model.helpfulness.counts.get(article, (0.0, 0.0))
        assert up - before[0] <= 1.0  # one vote per client and article

    # top results of organic searches barely change
    same = 0
    for example in organic:
        a = np.argmax(feature_rows(example, clean_model))
        b = np.argmax(feature_rows(example, attacked_model))
        same += a == b
    assert same / len(organic) >= 0.95


def feature_rows(example, ranker):
    from kbsearch.ranking.scoring import scores

    return scores(example.matrix, ranker.model.for_mode("hybrid").weights)


def test_feature_matrix_of_random_candidates_has_every_feature():
    candidates, _ = random_candidates(np.random.default_rng(0))
    assert feature_matrix(candidates).shape == (30, len(FEATURES))


def test_synthetic_searches_teach_neither_examples_nor_learned_questions(store):
    rng = np.random.default_rng(5)
    typed, _ = log_search(store, rng, "typed", "ann", NOW)
    made_up, _ = log_search(store, rng, "made-up", "bob", NOW + 1)
    made_up = dataclasses.replace(made_up, search_id="made-up-2", synthetic=True)
    store.log_search(made_up)
    searches = {s.search_id: s for s in store.searches()}
    assert searches["made-up-2"].synthetic and not searches["typed"].synthetic
    article = typed.results[0].article_id
    events = [
        FeedbackEvent("typed", article, "helpful", 1, "faq", "ann", NOW),
        FeedbackEvent("made-up-2", made_up.results[0].article_id, "helpful", 1, "faq", "bob",
                      NOW + 1),
    ]
    stored = [store.add_event(e) for e in events]
    examples = examples_from_logs(searches.values(), stored, client_cap=5.0)
    assert [e.search.search_id for e in examples] == ["typed"]
    helpfulness, answered = learned_state(searches, stored)
    assert [a.client for a in answered] == ["ann"]  # the made-up query is no question
    assert helpfulness.counts[made_up.results[0].article_id][0] >= 1.0  # its vote counts
