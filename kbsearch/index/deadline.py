"""A time limit for one search: a deadline checked between its stages and inside Whoosh.

The embedding of a query cannot be interrupted, but it is bounded by the query length
limit, and the deadline is checked as soon as it returns; the keyword stage is stopped
between two matched documents (:class:`DeadlineCollector`); the agent assist's long texts
are embedded in batches with a check between them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from whoosh.collectors import Collector, WrappingCollector

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


class DeadlineCollector(WrappingCollector):
    """Stop a Whoosh search when its deadline passes, checked before each matched document.

    Whoosh's own TimeLimitCollector starts a timer thread per search and by default sets a
    SIGALRM handler, which only the main thread may do (gunicorn's and werkzeug's request
    threads are not the main thread); a clock read per document needs neither. A
    FilterCollector around it sees the documents through :meth:`matches`, so the deadline
    is checked for filtered searches too.
    """

    def __init__(self, child: Collector, deadline: Deadline) -> None:
        """Wrap a collector; its search raises SearchTimeoutError past the deadline."""
        super().__init__(child)
        self.deadline = deadline

    def matches(self) -> Iterator[int]:
        """Yield the matching documents, checking the deadline before each one."""
        for sub_docnum in self.child.matches():
            self.deadline.check("keyword")
            yield sub_docnum

    def collect_matches(self) -> None:
        """Collect the matching documents into the wrapped collector."""
        for sub_docnum in self.matches():
            self.child.collect(sub_docnum)
