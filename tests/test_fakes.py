"""The fake embedder of the plumbing tests: the Embedder protocol, determinism, closeness."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kbsearch.index.embedding import Embedder

from .conftest import ROOT
from .fakes import FakeEmbedder

ROUTER = "Internet geht nicht: der Router blinkt rot. Starten Sie den Router neu."
METER = "Den Zählerstand melden Sie online im Kundenportal oder per App."


def cosine(embedder: FakeEmbedder, query: str, passage: str) -> float:
    return float(embedder.embed_queries([query])[0] @ embedder.embed_passages([passage])[0])


def test_it_implements_the_embedder_protocol():
    embedder: Embedder = FakeEmbedder()
    assert embedder.name and embedder.dimension == 384
    queries = embedder.embed_queries(["Router blinkt rot", "", "?!"])
    passages = embedder.embed_passages([ROUTER, METER], progress=True)
    for vectors, rows in ((queries, 3), (passages, 2)):
        assert vectors.shape == (rows, 384) and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert embedder.embed_queries([]).shape == (0, 384)
    assert 2 < embedder.count_tokens(METER) < embedder.count_tokens(METER + " " + ROUTER)


def test_the_same_text_gives_the_same_vector_in_every_process_without_torch():
    here = FakeEmbedder().embed_passages([METER])[0]
    code = (
        "import json, sys; from tests.fakes import FakeEmbedder; "
        f"print(json.dumps(FakeEmbedder().embed_passages([{METER!r}])[0].tolist())); "
        "print('torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # str hashes differ from this process's
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert np.array_equal(np.array(json.loads(out[0]), dtype=np.float32), here)
    assert out[1] == "False"


def test_shared_words_and_word_parts_bring_texts_close():
    embedder = FakeEmbedder()
    assert cosine(embedder, "Router blinkt", ROUTER) > cosine(embedder, "Router blinkt", METER)
    assert cosine(embedder, "Zähler", METER) > cosine(embedder, "Zähler", ROUTER)  # trigrams
    assert cosine(embedder, "ZAEHLERSTAND", "Zählerstand") == pytest.approx(1.0)  # folded
    assert cosine(embedder, "und der die", "und der die") == pytest.approx(1.0)


def test_unrelated_texts_sit_at_the_shared_cosine_like_e5():
    embedder = FakeEmbedder(shared=0.8)
    assert cosine(embedder, "xqzv blorp wibble", ROUTER) == pytest.approx(0.8, abs=0.05)
    assert cosine(embedder, "Kuchen backen mit Streuseln", METER) == pytest.approx(0.8, abs=0.05)
    with pytest.raises(ValueError):
        FakeEmbedder(shared=1.0)


@pytest.mark.parametrize(("query", "expected"), [
    ("Wie melde ich meinen Zählerstand?", "zaehlerstand-melden"),
    ("Router blinkt rot", "router-stoerung"),
    ("submit meter reading", "zaehlerstand-melden-en"),
    ("SEPA Lastschrift einrichten", "sepa-lastschrift"),
])
def test_the_fake_sample_index_answers_queries_that_share_words(sample_service, query, expected):
    assert sample_service.search(query, k=3, log=False).results[0].article.id == expected
