"""The JSON the API answers with, as pydantic models: the schemas of the OpenAPI document.

The views build their JSON themselves (``SearchResponse.to_json``, ``bot_json``, ...); these
models describe it, with enums taken from the code, and the tests check every answer against
them. Every model forbids other fields, so a field added to an answer must be added here.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kbsearch.channels.bot import BotEvent, ReasonCode
from kbsearch.content.articles import ArticleStatus, Audience
from kbsearch.index.reindex import JobState
from kbsearch.stores.callbacks import CallbackStatus, TimeSlot
from kbsearch.stores.feedback import Channel, Event


class Answer(BaseModel):
    """A JSON answer: exactly the fields listed."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Answer):
    """What went wrong."""

    code: str = Field(description="Stable, for programs: invalid_parameter, not_found, ...")
    message: str = Field(description="For people; starts with the parameter it is about.")


class Error(Answer):
    """The one shape of every error."""

    error: ErrorDetail


class Translation(Answer):
    """The same article in another language: left out of the results, linked from them."""

    id: str
    title: str
    language: str
    url: str


class Hit(Answer):
    """One search result."""

    id: str
    title: str
    url: str
    snippet: str
    probability: float = Field(ge=0, le=1)
    scores: dict[str, float]
    language: str
    category: str
    tags: list[str]
    updated: str | None = Field(description="ISO date of the last update")
    translations: list[Translation] = Field(
        description="The article in other languages; a list has one article of each "
                    "translation family, in the requested or the query's language")


class SearchResults(Answer):
    """Ranked results of one search."""

    search_id: str
    query: str
    took_ms: float
    index_version: str
    model_version: str
    feedback_token: str | None = Field(
        description="Send it with feedback on this search (POST /api/v1/feedback); only a "
                    "search made without an API key has one: with a key, feedback is taken "
                    "from the same key.")
    results: list[Hit]


class StoredFeedback(Answer):
    """A feedback event as stored."""

    search_id: str
    article_id: str
    event: Event
    position: int = Field(ge=1)
    channel: Channel


class BotArticle(Answer):
    """An article the bot offers."""

    id: str
    title: str
    short_answer: str
    url: str
    probability: float = Field(ge=0, le=1)


class HandoffReason(Answer):
    """Why the customer should talk to a human."""

    code: ReasonCode
    detail: str


class TriedArticle(Answer):
    """An article offered first in some turn, with the customer's verdict."""

    id: str
    title: str
    probability: float
    feedback: BotEvent | None


class Verdict(Answer):
    """The customer's verdict on one article."""

    article_id: str
    event: BotEvent


class HandoffSummary(Answer):
    """The conversation summed up for the agent who takes over."""

    questions: list[str]
    articles_tried: list[TriedArticle]
    feedback: list[Verdict]
    reasons: list[ReasonCode]
    text: str = Field(description="The same as one German paragraph")


class Handoff(Answer):
    """Whether to hand the customer to a human, and why."""

    recommended: bool
    reasons: list[HandoffReason]
    summary: HandoffSummary | None


class BotAnswer(Answer):
    """The bot's answer to one turn."""

    conversation_id: str
    turn: int = Field(ge=1)
    new_conversation: bool
    search_id: str | None
    article: BotArticle | None
    probability: float | None
    alternatives: list[BotArticle]
    handoff: Handoff


class Span(Answer):
    """A sentence of the text sent, by character offsets."""

    text: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class MatchedSpan(Span):
    """A sentence of the text that points to an article."""

    similarity: float


class FoundRequest(Answer):
    """What the customer asks, as found in the text."""

    query: str
    sentences: list[Span]
    removed: dict[str, int] = Field(description="Lines set aside, by kind")


class AssistResult(Answer):
    """An article for the agent, with the sentences that matched it."""

    id: str
    title: str
    url: str
    probability: float = Field(ge=0, le=1)
    audience: Audience
    language: str
    category: str
    snippet: str
    matched_sentences: list[MatchedSpan]


class AssistAnswer(Answer):
    """Articles for an e-mail, ticket or transcript."""

    search_id: str
    request: FoundRequest
    results: list[AssistResult]


class Callback(Answer):
    """A callback request from the FAQ page."""

    reference: str
    created: str = Field(description="ISO 8601 time in UTC")
    status: CallbackStatus
    name: str
    phone: str
    preferred_time: TimeSlot
    language: str = Field(description="The FAQ page's interface language")
    description: str
    context: str = Field(description="search: <query> or article: <id>, or empty")


class CallbackList(Answer):
    """Callback requests, newest first."""

    callbacks: list[Callback]


class ArticleAnswer(Answer):
    """One article: metadata, Markdown and sanitised HTML."""

    id: str
    title: str
    language: str
    category: str
    tags: list[str]
    audience: Audience
    status: ArticleStatus
    updated: str | None
    review_by: str | None
    translation_of: str | None
    related: list[str]
    questions: list[str] = Field(description="Other ways customers ask for the article, "
                                 "written by its editors")
    url: str
    markdown: str
    html: str


class Health(Answer):
    """Liveness and the loaded index."""

    status: Literal["ok"]
    version: str
    index_version: str
    articles: int = Field(ge=0)
    model: str


class ReindexProgress(Answer):
    """How far a reindex is: articles embedded (or reused) of those read."""

    done: int = Field(ge=0)
    total: int = Field(ge=0, description="0 until the articles have been read")


class InvalidArticle(Answer):
    """An article file the build skipped."""

    file: str = Field(description="Relative to the articles folder")
    line: int | None
    field: str | None
    message: str = Field(description="file:line: field: what is wrong")


class ReindexResult(Answer):
    """What a successful reindex published."""

    version: str = Field(description="The new index build, now current")
    articles: int = Field(ge=0)
    chunks: int = Field(ge=0)
    embedded: int = Field(ge=0, description="Chunks embedded anew")
    reused: int = Field(ge=0, description="Chunks whose vectors came from the build before")
    added: list[str]
    changed: list[str]
    removed: list[str]
    invalid: list[InvalidArticle]
    seconds: float


class ReindexJob(Answer):
    """A background reindex of the articles folder (times: ISO 8601 in UTC)."""

    id: str
    state: JobState
    requested_by: str = Field(description="key <id> of the editor key, or its dashboard login")
    strict: bool
    requested: str
    started: str | None
    finished: str | None
    updated: str | None
    progress: ReindexProgress
    result: ReindexResult | None
    error: str | None = Field(description="Why it failed, for people (never a stack trace)")


class ReindexConflict(Answer):
    """A reindex is already queued or running."""

    error: ErrorDetail
    job: ReindexJob
