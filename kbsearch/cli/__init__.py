"""The kbsearch command line (click). Heavy modules are imported inside the commands.

``main`` is the console script; importing this package registers every command on it.
"""

from kbsearch.cli import (  # noqa: F401 - registers the commands
    admin,
    analytics,
    editors,
    judge,
    learning,
    search,
)
from kbsearch.cli.base import main

__all__ = ["main"]
