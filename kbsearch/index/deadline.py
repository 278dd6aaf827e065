"""A time limit for one search: a deadline checked between its stages and inside them.

The embedding of a query cannot be interrupted, but it is bounded by the query length
limit, and the deadline is checked as soon as it returns; the keyword stage is stopped
between two postings it reads (``kbsearch.index.keyword``); the agent assist's long texts
are embedded in batches with a check between them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kbsearch.errors import SearchTimeoutError


@dataclass(frozen=True)
class Deadline:
    """When a search must be done, on a monotonic clock; ``limit`` is the seconds it got."""

    limit: float
    expires: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def start(cls, limit: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """Return the deadline ``limit`` seconds from now."""
        return cls(limit, clock() + limit, clock)

    def remaining(self) -> float:
        """Return the seconds left (0 when the deadline has passed)."""
        return max(0.0, self.expires - self.clock())

    def check(self, stage: str) -> None:
        """Raise SearchTimeoutError naming the stage when the deadline has passed."""
        if self.clock() > self.expires:
            raise SearchTimeoutError(stage, self.limit)
