import json
import math

import pytest

from kbsearch.errors import DatasetError
from kbsearch.learning.evaluation import load_dataset, score_rankings
from kbsearch.learning.fitting import query_folds
from kbsearch.learning.metrics import (
    expected_calibration_error,
    mrr_at,
    ndcg_at,
    recall_at,
    reliability,
)


def test_ndcg_by_hand():
    assert ndcg_at(["x", "a", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    )
    assert ndcg_at(["a"], {"a": 1}, 10) == 1.0
    assert ndcg_at(["x"], {"a": 1}, 10) == 0.0


def test_mrr_recall_by_hand():
    assert mrr_at(["x", "y", "a"], {"a": 1}, 10) == pytest.approx(1 / 3)
    assert mrr_at(["x"] * 10 + ["a"], {"a": 1}, 10) == 0.0
    assert recall_at(["a", "x"], {"a": 1, "b": 1}, 10) == 0.5


def test_ece_by_hand():
    # bin 0.8-0.9: two items at 0.8, one right -> |0.8 - 0.5| ; bin 0.2-0.3: 0.2, wrong -> 0.2
    ece = expected_calibration_error([0.8, 0.8, 0.2], [True, False, False])
    assert ece == pytest.approx(2 / 3 * 0.3 + 1 / 3 * 0.2)
    assert expected_calibration_error([1.0, 0.0], [True, False]) == 0.0
    assert reliability([0.8, 0.8, 0.2], [True, False, False]) == [
        (0.2, 0.0, 1), (0.8, 0.5, 2)
    ]


def test_score_rankings_averages_over_queries():
    result = score_rankings(
        {"q1": [("a", 0.9), ("b", 0.1)], "q2": [("c", 0.6), ("d", 0.5)]},
        {"q1": {"a": 1}, "q2": {"d": 1}},
    )
    assert result["top1"] == 0.5
    assert result["mrr@10"] == pytest.approx((1 + 0.5) / 2)
    assert result["recall@10"] == 1.0


def test_query_folds_are_reproducible_and_spread():
    ids = [f"q{i}" for i in range(200)]
    folds = query_folds(ids, 5)
    assert folds == query_folds(ids, 5)
    assert query_folds(list(reversed(ids)), 5) == list(reversed(folds))
    assert all(25 <= folds.count(f) <= 55 for f in range(5))


def write_beir(folder, corpus, queries, qrels):
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(c) for c in corpus), "utf-8")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries), "utf-8")
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels, "utf-8")


def test_load_dataset_detects_languages_and_skips_unjudged(tmp_path):
    write_beir(
        tmp_path / "mini",
        [{"_id": "d1", "title": "Zählerstand melden", "text": "Melden Sie den Stand online."},
         {"_id": "d2", "title": "", "text": "You can pay your bill by bank transfer."}],
        [{"_id": "q1", "text": "Wie melde ich den Zähler?"}, {"_id": "q2", "text": "unjudged"}],
        "q1\td1\t1\n",
    )
    data = load_dataset(tmp_path / "mini")
    assert [d.language for d in data.documents] == ["de", "en"]
    assert data.documents[1].title == ""
    assert data.queries == {"q1": "Wie melde ich den Zähler?"}


@pytest.mark.parametrize(
    ("corpus", "qrels", "message"),
    [
        ("{not json", "q1\td1\t1\n", "corpus.jsonl:1: not valid JSON"),
        ('{"title": "x"}', "q1\td1\t1\n", "needs an '_id'"),
        ('{"_id": "d1", "text": "x"}', "q1\td1\n", "qrels.tsv:2: expected"),
        ('{"_id": "d1", "text": "x"}', "q1\td1\tyes\n", "is no number"),
    ],
)
def test_malformed_dataset_files_name_file_and_line(tmp_path, corpus, qrels, message):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text(corpus, "utf-8")
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}', "utf-8")
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels, "utf-8")
    with pytest.raises(DatasetError, match=message):
        load_dataset(folder)


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope")
