"""ONNX Runtime's transformer fusions applied to an export, kept only where they change nothing.

``torch.onnx.export`` writes a transformer as several hundred small operators: every layer's
attention as matrix products, reshapes, transposes, a softmax and the arithmetic of its
mask, and the shape computations between them. ONNX Runtime pays for each operator on each
call, which for a query of a dozen tokens is a large part of the work. Its transformer
optimizer (``onnxruntime.transformers.optimizer``) rewrites each layer's attention into one
``Attention`` operator, the residual additions with their layer norms into
``SkipLayerNormalization``, and the embeddings with theirs into ``EmbedLayerNormalization``
(multilingual-e5-small: 908 operators → 122). It recognises attention as an export traced
with eager attention writes it, not the masking of PyTorch's fused SDPA, so
:func:`kbsearch.index.onnx_engine.export_onnx` traces with eager attention.

The fused graph is kept only if its token states equal the plain export's on sample texts
(padding positions aside, which mean pooling leaves out); otherwise, or when the optimizer
fails (a model it does not know), the plain export is used as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from kbsearch.errors import ModelError

# token states may differ by float rounding (fused kernels sum in another order)
TOLERANCE = 1e-4
FUSED_OPERATORS = ("EmbedLayerNormalization", "Attention", "SkipLayerNormalization",
                   "BiasGelu", "FastGelu", "Gelu", "LayerNormalization")

Batch = dict[str, np.ndarray]  # input_ids and attention_mask of one call


class FusionError(ModelError):
    """The optimizer failed on an export, or its fused graph computes something else."""


@contextmanager
def _quiet() -> Iterator[None]:
    """Keep the optimizer's progress notes off the console (its warnings too: a model it
    cannot fuse is not an error here, the plain export is used)."""
    logger = logging.getLogger("onnxruntime.transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def token_states(path: Path, batches: Sequence[Batch]) -> list[np.ndarray]:
    """Run an exported model on batches (one thread); return each batch's token states."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
    return [session.run(None, batch)[0] for batch in batches]


def largest_difference(plain: Sequence[np.ndarray], fused: Sequence[np.ndarray],
                       batches: Sequence[Batch]) -> float:
    """Return the largest absolute difference of two models' token states at the positions
    the attention masks keep."""
    largest = 0.0
    for a, b, batch in zip(plain, fused, batches, strict=True):
        if a.shape != b.shape:
            return float("inf")
        kept = batch["attention_mask"].astype(bool)
        largest = max(largest, float(np.max(np.abs(a[kept] - b[kept]), initial=0.0)))
    return largest


def fuse_transformer(plain: Path, fused: Path, num_heads: int, hidden_size: int,
                     batches: Sequence[Batch]) -> dict[str, int]:
    """Write the plain export with ONNX Runtime's transformer fusions to ``fused``; return
    how many operators of each fused kind it has.

    Raises FusionError when the optimizer fails or the fused graph's token states differ
    from the plain export's by more than TOLERANCE on ``batches``; ``fused`` is then
    removed.
    """
    try:
        import onnx
        from onnxruntime.transformers import optimizer

        graph = onnx.load(str(plain))  # read first: the optimizer's temporary folder
        with _quiet():                 # would outlive a file it cannot read
            model = optimizer.optimize_model(graph, model_type="bert",
                                             num_heads=num_heads, hidden_size=hidden_size,
                                             opt_level=0)
            counts = model.get_fused_operator_statistics()
            model.save_model_to_file(str(fused))
        difference = largest_difference(token_states(plain, batches),
                                        token_states(fused, batches), batches)
    except Exception as exc:  # noqa: BLE001 - whatever fails, the plain export is kept
        fused.unlink(missing_ok=True)
        raise FusionError(f"ONNX Runtime's optimizer could not fuse {plain.name}: "
                          f"{type(exc).__name__}: {exc}") from None
    if not difference <= TOLERANCE:
        fused.unlink(missing_ok=True)
        raise FusionError(f"the fused graph of {plain.name} differs from the export by "
                          f"{difference:.2g} (more than {TOLERANCE:g})")
    return {name: int(counts[name]) for name in FUSED_OPERATORS if counts.get(name)}
