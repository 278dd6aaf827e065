"""ONNX Runtime's engine: the export, when it may be used, and its vectors against
sentence-transformers' (the default model exported by scripts/setup.sh, and a tiny random
model exported here)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from kbsearch.errors import ModelError
from kbsearch.index.onnx_engine import (
    EXPORT_FORMAT,
    ONNX_DIR,
    ONNX_SOURCE,
    OnnxEmbedder,
    export_onnx,
    model_layout,
    onnx_mismatch,
    onnx_outdated,
    onnx_path,
    padding_batches,
)
from kbsearch.index.onnx_fusion import FusionError, fuse_transformer, largest_difference

from .conftest import MODEL
from .test_inference import ENGLISH, GERMAN, LONG, ODD


def exported_folder(folder: Path, **source: object) -> Path:
    """A model folder with the files the checks read: weights, an export and its record
    (no real model)."""
    from kbsearch.index.onnx_engine import weights_digest

    (folder / ONNX_DIR).mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    onnx_path(folder).write_bytes(b"graph")
    stat = (folder / "model.safetensors").stat()
    record = {"max_tokens": 128, "normalize": True, "dimension": 8,
              "weights_size": stat.st_size,
              "weights_mtime_ns": stat.st_mtime_ns, "weights_sha256": weights_digest(folder),
              **source}
    (folder / ONNX_DIR / ONNX_SOURCE).write_text(json.dumps(record), "utf-8")
    return folder


def test_the_export_records_the_pipeline_it_runs(tmp_path: Path) -> None:
    assert model_layout(exported_folder(tmp_path / "mean")) == (128, True, 8)
    with pytest.raises(ModelError, match="export the model again"):
        model_layout(exported_folder(tmp_path / "old", max_tokens=None))
    with pytest.raises(ModelError, match="cannot read"):
        model_layout(tmp_path / "missing")


def test_only_mean_pooled_transformers_are_exported() -> None:
    """The pipeline check at export: Transformer, mean pooling over every token, and
    optionally normalisation; CLS pooling, or mean pooling without the prompt, refused."""
    from kbsearch.index.onnx_engine import pipeline_layout

    class Transformer:
        pass

    class Normalize:
        pass

    class Pooling:
        def __init__(self, **config: object) -> None:
            self.config = config

        def get_config_dict(self) -> dict:
            return self.config

    class Model(list):
        max_seq_length = 256

    assert pipeline_layout(Model([Transformer(), Pooling(pooling_mode="mean"), Normalize()]),
                           Path("m")) == (256, True)
    assert pipeline_layout(Model([Transformer(), Pooling(pooling_mode_mean_tokens=True)]),
                           Path("m")) == (256, False)
    for refused in (Model([Transformer(), Pooling(pooling_mode="cls")]),
                    Model([Transformer(), Pooling(pooling_mode="mean", include_prompt=False)]),
                    Model([Transformer(), Pooling(pooling_mode_mean_tokens=True,
                                                  pooling_mode_max_tokens=True)]),
                    Model([Transformer()])):
        with pytest.raises(ModelError, match="mean pooling"):
            pipeline_layout(refused, Path("m"))


def test_an_export_of_other_weights_is_not_used(tmp_path: Path) -> None:
    """No export, or one whose recorded weights differ: the reason names the command;
    weights that were only touched (same bytes) keep the export usable."""
    bare = tmp_path / "bare"
    bare.mkdir()
    assert "kbsearch model export-onnx" in onnx_mismatch(bare)
    folder = exported_folder(tmp_path / "model")
    assert onnx_mismatch(folder) == ""
    os.utime(folder / "model.safetensors", ns=(1, 1))  # touched: the digest decides
    assert onnx_mismatch(folder) == ""
    (folder / "model.safetensors").write_bytes(b"other weights")
    assert "made from other weights" in onnx_mismatch(folder)
    with pytest.raises(ModelError, match="made from other weights"):
        OnnxEmbedder(str(folder))


def test_an_export_of_an_older_format_is_outdated_but_still_runs(tmp_path: Path) -> None:
    old = exported_folder(tmp_path / "old")  # no "export" recorded: format 1
    assert onnx_mismatch(old) == ""
    assert "is of format 1" in onnx_outdated(old)
    assert onnx_outdated(exported_folder(tmp_path / "new", export=EXPORT_FORMAT)) == ""
    bare = tmp_path / "bare"
    bare.mkdir()
    assert "has no ONNX export" in onnx_outdated(bare)


def test_fused_token_states_are_compared_where_the_mask_keeps_them() -> None:
    batch = {"input_ids": np.ones((2, 3), dtype=np.int64),
             "attention_mask": np.array([[1, 1, 1], [1, 0, 0]])}
    plain = np.zeros((2, 3, 4))
    fused = plain.copy()
    fused[1, 1:] = 5.0  # padding positions: never pooled
    assert largest_difference([plain], [fused], [batch]) == 0.0
    fused[1, 0, 2] = 0.25
    assert largest_difference([plain], [fused], [batch]) == 0.25
    assert largest_difference([plain], [fused[:, :2]], [batch]) == float("inf")


def test_a_graph_the_optimizer_cannot_read_is_not_fused(tmp_path: Path) -> None:
    plain = tmp_path / "model.onnx"
    plain.write_bytes(b"not a graph")
    fused = tmp_path / "fused.onnx"
    with pytest.raises(FusionError, match="could not fuse model.onnx"):
        fuse_transformer(plain, fused, 2, 32, [])
    assert not fused.exists()


@pytest.fixture(scope="module")
def engines():
    """The default model on ONNX Runtime and on sentence-transformers."""
    from kbsearch.index.embedding import SentenceTransformerEmbedder

    if onnx_mismatch(MODEL):
        pytest.fail(f"scripts/setup.sh exports the default model: {onnx_mismatch(MODEL)}")
    return OnnxEmbedder(str(MODEL)), SentenceTransformerEmbedder(str(MODEL))


@pytest.mark.model
@pytest.mark.parametrize("texts", [GERMAN, ENGLISH, LONG, ODD], ids=["de", "en", "long", "odd"])
def test_onnx_gives_sentence_transformers_vectors(engines, texts: tuple[str, ...]) -> None:
    """Queries and passages, long texts cut at 512 tokens, odd characters: cosine 0.99999
    or more (full precision, same tokenizer), the same token counts."""
    onnx, st = engines
    for method in ("embed_queries", "embed_passages"):
        mine, theirs = getattr(onnx, method)(texts), getattr(st, method)(texts)
        assert mine.shape == theirs.shape == (len(texts), 384) and mine.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)
        assert (mine * theirs).sum(axis=1).min() >= 0.99999, method
    assert [onnx.count_tokens(t) for t in texts] == [st.count_tokens(t) for t in texts]
    assert onnx.embed_queries([]).shape == (0, 384)


def test_batches_hold_texts_of_about_the_same_length() -> None:
    lengths = np.array([512, 500, 470, 300, 290, 280, 270, 12, 11, 11, 10, 9])
    batches = padding_batches(lengths, limit=3)
    assert batches == [(0, 3), (3, 6), (6, 7), (7, 10), (10, 12)]
    for start, stop in batches:  # none padded to less than 90 % of its longest
        assert lengths[start:stop].min() >= 0.9 * lengths[start] and stop - start <= 3
    assert padding_batches(np.array([5]), 32) == [(0, 1)] and padding_batches(np.array([]), 8) == []


@pytest.mark.model
def test_a_text_gets_the_same_vector_in_any_batch(engines) -> None:
    """Embedded alone or among texts of other lengths, in batches of any size: the same
    vector (padding is masked out)."""
    onnx, _ = engines
    texts = [*GERMAN, *ENGLISH, *LONG, *ODD]
    together = onnx.embed_passages(texts)
    size = onnx.batch_size
    try:
        onnx.batch_size = 2
        in_pairs = onnx.embed_passages(texts)
    finally:
        onnx.batch_size = size
    alone = np.vstack([onnx.embed_passages([t]) for t in texts])
    assert (together * alone).sum(axis=1).min() >= 0.99999
    assert (in_pairs * alone).sum(axis=1).min() >= 0.99999


@pytest.mark.model
def test_onnx_describes_the_same_model_and_answers_threads_alike(engines) -> None:
    """Name, dimension, prompts and token limit as sentence-transformers (so an index
    built by either is searched by the other); four threads at once get what one gets."""
    from kbsearch.index.builds import model_description

    onnx, st = engines
    assert model_description(onnx) == model_description(st) and onnx.max_tokens == 512
    texts = GERMAN + ENGLISH
    expected = onnx.embed_queries(texts)
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(onnx.embed_queries(texts)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for vectors in results:
        np.testing.assert_allclose(vectors, expected, atol=1e-6)


@pytest.mark.model
@pytest.mark.slow
def test_a_model_is_exported_and_checked(tmp_path: Path, monkeypatch, caplog) -> None:
    """A tiny random BERT saved as a sentence-transformers folder (the default model's
    tokenizer): the export is fused, runs on ONNX Runtime with its vectors, and records its
    weights; where fusing fails, the plain export is written."""
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    try:  # sentence-transformers 6 (importing .models warns there)
        from sentence_transformers.sentence_transformer.modules import (
            Normalize,
            Pooling,
            Transformer,
        )
    except ImportError:  # sentence-transformers 5
        from sentence_transformers.models import Normalize, Pooling, Transformer

    base = tmp_path / "base"
    base.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(MODEL / name, base / name)
    config = BertConfig(vocab_size=250037, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=514, type_vocab_size=1)
    BertModel(config).save_pretrained(str(base))
    transformer = Transformer(str(base), max_seq_length=64)
    folder = tmp_path / "tiny"
    SentenceTransformer(modules=[transformer, Pooling(32, "mean"),
                                 Normalize()]).save(str(folder))
    assert "has no ONNX export" in onnx_mismatch(folder)
    assert export_onnx(folder) == onnx_path(folder)
    assert onnx_mismatch(folder) == "" and onnx_outdated(folder) == ""
    assert sorted(p.name for p in (folder / ONNX_DIR).iterdir()) == ["model.onnx", ONNX_SOURCE]
    source = json.loads((folder / ONNX_DIR / ONNX_SOURCE).read_text("utf-8"))
    # each of the 2 layers' attention one operator, its 2 residual layer norms fused too
    assert source["export"] == EXPORT_FORMAT
    assert source["fused"]["Attention"] == 2 and source["fused"]["SkipLayerNormalization"] == 4
    from kbsearch.index.onnx_engine import compare_with_sentence_transformers

    figures = compare_with_sentence_transformers(folder, [*GERMAN, *ENGLISH, *LONG])
    assert figures["min_cosine"] >= 0.99999
    assert OnnxEmbedder(str(folder)).max_tokens == 64

    # where the optimizer fails, the plain export is written, as good and only slower
    import kbsearch.index.onnx_fusion as fusion

    def fail(*args: object) -> dict[str, int]:
        raise FusionError("no fusion today")

    monkeypatch.setattr(fusion, "fuse_transformer", fail)
    with caplog.at_level("WARNING"):
        export_onnx(folder)
    assert "stays unfused: no fusion today" in caplog.text
    source = json.loads((folder / ONNX_DIR / ONNX_SOURCE).read_text("utf-8"))
    assert source["fused"] == {} and source["export"] == EXPORT_FORMAT
    assert sorted(p.name for p in (folder / ONNX_DIR).iterdir()) == ["model.onnx", ONNX_SOURCE]
    figures = compare_with_sentence_transformers(folder, [*GERMAN, *ENGLISH])
    assert figures["min_cosine"] >= 0.99999

    # a model class that takes no attention choice is exported with its own attention
    import sentence_transformers

    loaded: list[object] = []

    def without_eager(path: str, device: str, model_kwargs: object = None) -> object:
        loaded.append(model_kwargs)
        if model_kwargs:
            raise ValueError("unexpected keyword argument 'attn_implementation'")
        return SentenceTransformer(path, device=device)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", without_eager)
    export_onnx(folder)
    assert loaded == [{"attn_implementation": "eager"}, None]
    monkeypatch.undo()
    figures = compare_with_sentence_transformers(folder, [*GERMAN, *ENGLISH])
    assert figures["min_cosine"] >= 0.99999


# onnxruntime keeps quiet by itself where these say it runs under CI: left out, so that
# only kbsearch's opt-out can keep the home folder empty
CI_VARIABLES = ("CI", "CONTINUOUS_INTEGRATION", "GITHUB_ACTIONS", "GITLAB_CI", "TF_BUILD",
                "BUILD_ID", "BUILD_BUILDID", "JENKINS_URL", "BUILDKITE", "CIRCLECI", "TRAVIS")


@pytest.mark.model
def test_onnx_runtime_keeps_no_telemetry_when_kbsearch_runs_it(tmp_path: Path) -> None:
    """No device id, no event cache: importing kbsearch opts out before onnxruntime starts
    (without the opt-out, onnxruntime 1.32 writes both under ~/.cache/Microsoft)."""
    import subprocess
    import sys

    if not onnx_path(MODEL).exists():
        pytest.skip("the default model has no ONNX export (scripts/setup.sh makes it)")
    code = ("import kbsearch\n"
            "from kbsearch.index.onnx_engine import OnnxEmbedder\n"
            f"OnnxEmbedder({str(MODEL)!r}).embed_queries(['Zählerstand melden'])\n")
    env = {k: v for k, v in os.environ.items()
           if k != "ORT_DISABLE_TELEMETRY" and k not in CI_VARIABLES}
    run = subprocess.run([sys.executable, "-c", code], env={**env, "HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


@pytest.mark.model
def test_a_forked_process_makes_its_own_session(engines) -> None:
    """ONNX Runtime's threads do not survive fork: a gunicorn worker forked from a master
    that had loaded the session makes its own on first use (the inherited one is kept,
    never closed) and gets the same vectors."""
    onnx, _ = engines
    expected = onnx.embed_queries(GERMAN)
    assert onnx.loaded
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's teardown
        try:
            fresh = not onnx.loaded
            vectors = onnx.embed_queries(GERMAN)
            report = {"fresh": fresh, "loaded": onnx.loaded, "inherited": len(onnx._inherited),
                      "same": bool(np.allclose(vectors, expected, atol=1e-6))}
            os.write(write, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        report = json.loads(pipe.read())
    assert report == {"fresh": True, "loaded": True, "inherited": 1, "same": True}
    assert onnx.loaded and not onnx._inherited  # the parent keeps its own


def test_the_master_leaves_a_per_process_engine_to_its_workers(tmp_path, sample_index) -> None:
    """``kbsearch serve`` warms up before forking: an engine loaded per process (ONNX
    Runtime) is not used then, only by each worker's own warm-up."""
    from .conftest import service_over
    from .fakes import FakeEmbedder

    class PerProcess(FakeEmbedder):
        per_process = True
        calls = 0

        def embed_queries(self, texts):
            PerProcess.calls += 1
            return super().embed_queries(texts)

    service = service_over(tmp_path, sample_index, PerProcess())
    service.warm_up(before_fork=True)
    assert PerProcess.calls == 0
    service.warm_up()
    assert PerProcess.calls == 1
