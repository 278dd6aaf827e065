"""kbsearch: hybrid semantic knowledge-base search for customer service."""

import os
import sys

__version__ = "0.1.0"

# OpenBLAS (numpy's BLAS) keeps its worker threads spinning for 2^28 cycles after every
# matrix product, about 0.1 s of a core each time, which the next query's embedding then
# waits for; 2^4 lets them sleep at once (a search at 10k articles: 47.5 against 64.5 ms
# with two BLAS threads). OpenBLAS reads the variable when numpy first loads it, so it is
# set here, before any kbsearch module imports numpy; an operator's value is kept. Where
# numpy was loaded first, it comes too late: ``SearchService.warm_up`` then keeps BLAS on
# one thread instead.
BLAS_THREADS_SLEEP = "OPENBLAS_THREAD_TIMEOUT" in os.environ or "numpy" not in sys.modules
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

# ONNX Runtime (1.29 and later) keeps a device identifier and a cache of telemetry events
# under ~/.cache/Microsoft/DeveloperTools and tries to send them to Microsoft: nothing a
# contact center's search service may do unasked, and this machine has no network. The
# variable is read once, when onnxruntime starts, so it is set here; an operator's value
# is kept.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
