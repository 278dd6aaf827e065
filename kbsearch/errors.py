"""Named errors of kbsearch; each carries a message a person can act on."""

from __future__ import annotations

from pathlib import Path


class KbsearchError(Exception):
    """Base class of every error kbsearch raises on purpose."""


class ConfigError(KbsearchError):
    """A setting has a value kbsearch cannot use."""


class ArticleError(KbsearchError):
    """An article file is invalid; names the file, the line and the field."""

    def __init__(
        self, path: Path | str, message: str, line: int | None = None, field: str | None = None
    ) -> None:
        self.path = Path(path)
        self.line = line
        self.field = field
        self.reason = message
        where = str(self.path) + (f":{line}" if line else "")
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {message}")


class ArticlesNotFoundError(KbsearchError):
    """The articles folder does not exist or is not a folder."""


class IndexNotFoundError(KbsearchError):
    """No index build exists yet; run ``kbsearch index`` first."""


class IndexFormatError(IndexNotFoundError):
    """The current build was written in another format; run ``kbsearch index`` again."""


class IndexBuildError(KbsearchError):
    """An index build failed; the current index stays as it was."""


class ModelError(KbsearchError):
    """The embedding model cannot be loaded or built."""


class QueryError(KbsearchError):
    """A search request has an invalid parameter; names the parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {message}")


class UnknownAnswerError(QueryError):
    """The bot's feedback names an answer, or an article of it, that the conversation lacks."""


class ArticleNotFoundError(KbsearchError):
    """No article with this id is visible to the caller."""

    def __init__(self, article_id: str) -> None:
        self.article_id = article_id
        super().__init__(f"no article with id '{article_id}'")


class DatasetError(KbsearchError):
    """An evaluation dataset folder is missing files or has malformed lines."""


class FeedbackError(KbsearchError):
    """A logged search or feedback event has an invalid field; names the field."""

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {message}")


class UnknownSearchError(FeedbackError):
    """A feedback event refers to a search_id that was never logged."""


class DuplicateFeedbackError(FeedbackError):
    """The same event for the same article and search is already stored."""


class StoreError(KbsearchError):
    """A store's database cannot be opened or used, or its schema is newer than this code.

    The message names the store, its file and what failed; it never holds a stack trace.
    """


class FeedbackStoreError(StoreError):
    """The feedback database cannot be opened or used, or its schema is newer than this code."""


class ConversationStoreError(StoreError):
    """The chatbot conversation database cannot be opened or used."""


class ConversationConflictError(KbsearchError):
    """Two turns of one conversation arrived at the same time; the later must be resent."""


class ForbiddenError(KbsearchError):
    """The caller's role may not use this route."""


class CallbackError(KbsearchError):
    """A callback request from the FAQ page has invalid fields.

    ``problems`` maps each bad field to a problem code (``required``, ``too_long``,
    ``invalid``) that the page words in the customer's language.
    """

    def __init__(self, problems: dict[str, str], message: str | None = None) -> None:
        self.problems = dict(problems)
        listed = ", ".join(f"{field}: {code}" for field, code in self.problems.items())
        super().__init__(message or f"invalid callback request ({listed})")


class CallbackStoreError(StoreError):
    """The callback request database cannot be opened or written."""


class AdminSessionStoreError(StoreError):
    """The dashboard's login sessions cannot be read or written."""


class ReportError(KbsearchError):
    """An analytics report or a content-gap draft cannot be made as asked."""


class SynonymsError(KbsearchError):
    """The synonyms file has a line kbsearch cannot read; names the file and the line."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = message
        super().__init__(f"{self.path}{f':{line}' if line else ''}: {message}")


class BackupError(KbsearchError):
    """A backup cannot be written, or a backup folder cannot be restored; says which file."""


class SearchTimeoutError(KbsearchError):
    """A search ran past its time limit (KBSEARCH_SEARCH_TIME_LIMIT) and was stopped.

    ``stage`` names where it was stopped (embedding, dense, keyword, assist); ``limit`` is
    the limit in seconds.
    """

    def __init__(self, stage: str, limit: float) -> None:
        self.stage = stage
        self.limit = limit
        super().__init__(f"the search took longer than its time limit of {limit:g} s "
                         f"(stopped at the {stage} stage); try again in a moment")
