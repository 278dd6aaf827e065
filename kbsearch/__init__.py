"""kbsearch: hybrid semantic knowledge-base search for customer service."""

__version__ = "0.1.0"
