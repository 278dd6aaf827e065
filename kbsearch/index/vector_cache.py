"""A bounded cache of query vectors: the same query is embedded once, not once per search.

A query's vector depends only on its text and the model, so a service keeps the vectors of
the queries it embedded most recently (least recently used goes first). The FAQ page's
results as you type search the same text up to three times per request (once per
language tried) and customers repeat common questions; both then cost one embedding.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np


class VectorCache:
    """Query text → vector, at most ``size`` of them (0: nothing kept); safe across threads."""

    def __init__(self, size: int) -> None:
        """Create an empty cache holding at most ``size`` vectors."""
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Return how many vectors are kept."""
        return len(self._vectors)

    def get(self, text: str, embed: Callable[[str], np.ndarray]) -> np.ndarray:
        """Return the vector of ``text``: the kept one, or ``embed(text)`` (then kept).

        The vector returned is read-only, as it may be handed to other searches later.
        The model runs outside the lock, so two threads may embed a new text at once.
        """
        with self._lock:
            vector = self._vectors.get(text)
            if vector is not None:
                self._vectors.move_to_end(text)
                return vector
        vector = np.array(embed(text), dtype=np.float32)
        vector.setflags(write=False)
        if self.size > 0:
            with self._lock:
                self._vectors[text] = vector
                self._vectors.move_to_end(text)
                while len(self._vectors) > self.size:
                    self._vectors.popitem(last=False)
        return vector
