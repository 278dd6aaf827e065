"""The chatbot backend: one search per turn, server-side conversations and the hand-off rules.

A bot framework sends each customer message (and the customer's verdict on the last answer)
to ``POST /api/v1/bot/turn`` and stays stateless: the conversation lives here, in a
``ConversationStore`` (:mod:`kbsearch.stores.conversations`, SQLite by default), and is
forgotten after a configurable idle time. Every turn says whether to hand the customer over
to a human, and why, so that the bot offers the way out before nerves fray. The rules are
pure functions over the conversation, each with its own setting. Each conversation started
and the first hand-off of each are also recorded, without text, in a ``HandoffStore``
(:mod:`kbsearch.stores.handoffs`), which outlives the conversations for the analytics.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from kbsearch.config import Settings
from kbsearch.content.analysis import (
    detect_language,
    fold,
    query_terms,
    stopwords,
    words,
)
from kbsearch.content.snippets import short_answer
from kbsearch.content.visibility import Caller
from kbsearch.errors import (
    ArticleNotFoundError,
    DuplicateFeedbackError,
    QueryError,
    StoreError,
    UnknownAnswerError,
)
from kbsearch.stores.callbacks import clean_text
from kbsearch.stores.conversations import (
    Conversation,
    ConversationStore,
    Offer,
    SQLiteConversationStore,
    Turn,
    Verdict,
)
from kbsearch.stores.handoffs import BotHandoff, BotStart, HandoffStore, SQLiteHandoffStore

log = logging.getLogger(__name__)

BotEvent = Literal["helpful", "not_helpful", "resolved", "escalated"]
FEEDBACK_EVENTS: tuple[str, ...] = get_args(BotEvent)
NEGATIVE = frozenset({"not_helpful", "escalated"})
POSITIVE = frozenset({"helpful", "resolved"})
CONVERSATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
MAX_TURNS_KEPT = 50
MIN_FALL = 0.02
PURGE_EVERY_SECONDS = 60.0
ReasonCode = Literal["human_requested", "low_probability", "no_answer", "falling_probability",
                     "repeated_terms", "negative_feedback"]
REASONS: dict[ReasonCode, str] = {  # code: how the German hand-off summary says it
    "human_requested": "Kunde möchte mit einem Menschen sprechen",
    "low_probability": "kein Artikel passt sicher genug",
    "no_answer": "kein passender Artikel gefunden",
    "falling_probability": "die Antworten passen von Mal zu Mal schlechter",
    "repeated_terms": "Kunde wiederholt seine Frage",
    "negative_feedback": "mehrere Antworten waren nicht hilfreich",
}


@dataclass(frozen=True)
class HandoffRules:
    """When a conversation should go to a human; every threshold is a setting."""

    below: float
    falling_turns: int
    repeat_similarity: float
    negative_feedbacks: int
    human_words: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> HandoffRules:
        """Read the ``bot_*`` settings."""
        return cls(
            below=settings.bot_handoff_below,
            falling_turns=settings.bot_falling_turns,
            repeat_similarity=settings.bot_repeat_similarity,
            negative_feedbacks=settings.bot_negative_feedbacks,
            human_words=settings.bot_human_words,
        )


@dataclass(frozen=True)
class Reason:
    """Why a hand-off is recommended: a stable code and a sentence for people."""

    code: ReasonCode
    detail: str


# --- hand-off rules: pure functions -------------------------------------------------------

def message_terms(message: str) -> tuple[str, ...]:
    """Return the distinct stemmed content terms of a message (stop words left out)."""
    if not message.strip():
        return ()
    return tuple(query_terms(message, detect_language(message)))


def asks_for_human(message: str, human_words: Sequence[str]) -> str | None:
    """Return the word by which the message asks for a human, or None.

    Words are compared folded (ä = ae, ß = ss); words of six letters or more also match
    inside compounds and inflections ("Kundenberaterin", "Mitarbeitern").
    """
    wanted = [fold(w) for w in human_words]
    for token in words(message):
        for word in wanted:
            if token == word or (len(word) >= 6 and word in token):
                return word
    return None


# words that only frame a request for a human ("Ich möchte bitte mit jemandem sprechen")
REQUEST_WORDS = frozenset(fold(w) for w in (
    "sprechen", "reden", "verbinden", "telefonieren", "möchte", "möchten", "will", "wollen",
    "würde", "gerne", "gern", "bitte", "einem", "einer", "einen", "echten", "richtigen",
    "jemandem", "jemand", "jetzt", "sofort", "endlich", "hallo",
    "talk", "speak", "connect", "want", "would", "like", "real", "now", "please", "hello",
))


def only_asks_for_human(message: str, human_words: Sequence[str]) -> bool:
    """Whether a message does nothing but ask for a human ("Ich will einen Mitarbeiter").

    Such a message is no question about the customer's problem: the hand-off reasons record
    it, and the summary's questions leave it out.
    """
    if asks_for_human(message, human_words) is None:
        return False
    stop = stopwords(detect_language(message))
    return all(token in stop or token in REQUEST_WORDS or asks_for_human(token, human_words)
               for token in words(message))


def falling(probabilities: Sequence[float], turns: int, min_fall: float = MIN_FALL) -> bool:
    """Whether the best probability fell (by at least ``min_fall``) in each of the last turns."""
    if len(probabilities) < turns + 1:
        return False
    recent = probabilities[-(turns + 1):]
    return all(later <= earlier - min_fall for earlier, later in itertools.pairwise(recent))


def repetition(terms: Sequence[str], earlier: Sequence[Sequence[str]]) -> float:
    """Return the largest share of this message's terms that one earlier message had too."""
    mine = set(terms)
    if not mine:
        return 0.0
    return max((len(mine & set(other)) / len(mine) for other in earlier if other), default=0.0)


def negative_streak(verdicts: Sequence[Verdict]) -> int:
    """Return how many of the latest verdicts in a row were negative."""
    streak = 0
    for verdict in reversed(verdicts):
        if verdict.event not in NEGATIVE:
            break
        streak += 1
    return streak


def customer_of(client: str, conversation_id: str) -> str:
    """Return the pseudonymous client that a conversation's searches and feedback count as.

    A chatbot platform calls with one key for all its customers. Counted by key, all of them
    would be one client to the analytics (distinct clients, content gaps) and to training's
    per-client cap; one conversation stands for one customer instead, hashed with the key's
    identity so that two bots never share a client.
    """
    return hashlib.sha256(f"{client}\x00{conversation_id}".encode()).hexdigest()[:16]


def handoff_reasons(
    rules: HandoffRules, conversation: Conversation, searched: bool
) -> list[Reason]:
    """Return every reason to hand this conversation to a human after its latest turn.

    ``searched`` says whether the latest turn offered articles: it answered a message, or
    offered the next best after negative feedback (rather than only recording feedback);
    the probability rules look at such turns only.
    """
    reasons: list[Reason] = []
    turns = conversation.turns
    latest = turns[-1] if turns else None
    if latest is not None and latest.message:
        word = asks_for_human(latest.message, rules.human_words)
        if word:
            reasons.append(Reason("human_requested", f"the customer asked for a human ({word!r})"))
    if searched and latest is not None:
        best = latest.best
        if best is None:
            reasons.append(Reason("no_answer", "no article matches the question" if
                                  latest.message else "no further article to offer"))
        elif best.probability < rules.below:
            reasons.append(Reason(
                "low_probability",
                f"the best article solves the question with probability "
                f"{best.probability:.2f}, below {rules.below:.2f}",
            ))
        probabilities = [t.best.probability if t.best else 0.0 for t in turns if t.offers
                         or t.message]
        if falling(probabilities, rules.falling_turns):
            shown = " → ".join(f"{p:.2f}" for p in probabilities[-(rules.falling_turns + 1):])
            reasons.append(Reason(
                "falling_probability",
                f"the best probability fell {rules.falling_turns} turns in a row ({shown})",
            ))
        if latest.message:
            earlier = [t.terms for t in turns[:-1] if t.message]
            share = repetition(latest.terms, earlier)
            if earlier and share >= rules.repeat_similarity:
                reasons.append(Reason(
                    "repeated_terms",
                    f"the customer repeated {share:.0%} of the terms of an earlier message",
                ))
    streak = negative_streak(conversation.verdicts)
    if streak >= rules.negative_feedbacks:
        reasons.append(Reason(
            "negative_feedback", f"{streak} negative feedbacks in a row",
        ))
    return reasons


def handoff_summary(
    conversation: Conversation, reasons: Sequence[Reason], human_words: Sequence[str] = ()
) -> dict[str, Any]:
    """Summarise a conversation for the human who takes it over.

    Lists the questions asked (not the messages that only ask for a human), the articles
    tried with the customer's verdicts, and the reasons for the hand-off, plus the same as
    one German paragraph for the agent's screen.
    """
    questions = [t.message for t in conversation.turns
                 if t.message and not only_asks_for_human(t.message, human_words)]
    verdict_of = {v.article_id: v.event for v in conversation.verdicts}
    tried: dict[str, dict[str, Any]] = {}
    for turn in conversation.turns:
        if turn.best and turn.best.article_id not in tried:
            tried[turn.best.article_id] = {
                "id": turn.best.article_id, "title": turn.best.title,
                "probability": round(turn.best.probability, 4),
                "feedback": verdict_of.get(turn.best.article_id),
            }
    words_for = {"helpful": "hilfreich", "resolved": "gelöst", "not_helpful": "nicht hilfreich",
                 "escalated": "nicht gelöst", None: "ohne Rückmeldung"}
    text = []
    if questions:
        text.append("Anliegen: " + " / ".join(f"„{q}“" for q in questions) + ".")
    if tried:
        text.append("Angeboten: " + "; ".join(
            f"{a['title']} ({a['probability']:.0%}, {words_for[a['feedback']]})"
            for a in tried.values()) + ".")
    if reasons:
        text.append("Übergabe, weil: " + "; ".join(REASONS[r.code] for r in reasons) + ".")
    return {
        "questions": questions,
        "articles_tried": list(tried.values()),
        "feedback": [{"article_id": v.article_id, "event": v.event} for v in
                     conversation.verdicts],
        "reasons": [r.code for r in reasons],
        "text": " ".join(text),
    }


# --- one turn -----------------------------------------------------------------------------

@dataclass(frozen=True)
class BotFeedback:
    """Validated feedback sent with a turn: an event on an offered article (default: the best)."""

    event: str
    article_id: str | None = None


@dataclass(frozen=True)
class BotAnswer:
    """What the bot says after a turn."""

    conversation: Conversation
    new_conversation: bool
    search_id: str | None
    offers: tuple[Offer, ...]
    answers: dict[str, str] = field(default_factory=dict)
    reasons: tuple[Reason, ...] = ()
    summary: dict[str, Any] | None = None

    @property
    def recommended(self) -> bool:
        """Whether to hand the customer to a human now."""
        return bool(self.reasons)


def parse_feedback(raw: object) -> BotFeedback | None:
    """Validate the optional ``feedback`` of a turn: an event name or {event, article_id}."""
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"event": raw}
    if not isinstance(raw, dict):
        raise QueryError("feedback", "must be an event name or an object with event and "
                         "optionally article_id")
    unknown = sorted(set(raw) - {"event", "article_id"})
    if unknown:
        raise QueryError("feedback", f"unknown field(s) {', '.join(unknown)}; "
                         "allowed: event, article_id")
    event, article_id = raw.get("event"), raw.get("article_id")
    if event not in FEEDBACK_EVENTS:
        raise QueryError("feedback.event", f"{event!r} is not one of {', '.join(FEEDBACK_EVENTS)}")
    if article_id is not None and (not isinstance(article_id, str) or not article_id.strip()):
        raise QueryError("feedback.article_id", "must be a non-empty string")
    return BotFeedback(str(event), article_id)


class ChatBot:
    """Answers chatbot turns over a search service and keeps the conversations."""

    def __init__(self, service: Any, store: ConversationStore, handoffs: HandoffStore,
                 rules: HandoffRules, alternatives: int) -> None:
        self.service = service
        self.store = store
        self.handoffs = handoffs
        self.rules = rules
        self.alternatives = alternatives
        self._purged = 0.0

    @classmethod
    def from_settings(cls, service: Any, settings: Settings) -> ChatBot:
        """Build the bot from the ``bot_*`` and ``channels_db`` settings."""
        store = SQLiteConversationStore(settings.channels_db, settings.bot_idle_minutes * 60)
        return cls(service, store, SQLiteHandoffStore(settings.channels_db),
                   HandoffRules.from_settings(settings), settings.bot_alternatives)

    def turn(
        self, conversation_id: object, message: object, feedback: object = None,
        caller: Caller | None = None, client: str = "", now: float | None = None,
    ) -> BotAnswer:
        """Record the feedback, answer the message and decide about a hand-off.

        Raises QueryError naming the field for bad input, UnknownAnswerError for feedback on
        an answer (or an article) the conversation does not have. A message may be left out only
        when feedback is given; negative feedback without a message offers the next article
        that was found before.
        """
        now = time.time() if now is None else now
        if not isinstance(conversation_id, str) or not CONVERSATION_ID.fullmatch(conversation_id):
            raise QueryError("conversation_id", "must be 1 to 128 letters, digits or ._:@- "
                             "starting with a letter or digit")
        if message is not None and not isinstance(message, str):
            raise QueryError("message", "must be a string")
        text = clean_text(message or "")  # no control characters, spaces tidied
        text = self.service.redactor.redact(text)  # conversations keep no personal data
        limit = self.service.settings.max_query_chars
        if len(text) > limit:
            raise QueryError("message", f"is {len(text)} characters long; at most {limit} "
                             "allowed (send long texts to /api/v1/assist)")
        verdict = parse_feedback(feedback)
        if not text and verdict is None:
            raise QueryError("message", "is required unless feedback is given")
        stored = self.store.get(client, conversation_id, now)
        conversation = stored or Conversation(client, conversation_id, now, now)
        person = customer_of(client, conversation_id)
        if verdict is not None:
            conversation = self._record(conversation, verdict, person, now, caller)
        answers: dict[str, str] = {}
        offers: tuple[Offer, ...] = ()
        search_id, searched = None, False
        if text:
            search_id, offers, answers = self._search(text, caller, person)
            searched = True
            conversation = self._add_turn(conversation, Turn(
                now, text, message_terms(text), search_id, offers))
        elif verdict is not None and verdict.event in NEGATIVE:
            search_id, offers, answers = self._next_best(conversation, caller)
            searched = True
            conversation = self._add_turn(conversation, Turn(now, "", (), search_id, offers))
        reasons = handoff_reasons(self.rules, conversation, searched)
        summary = (handoff_summary(conversation, reasons, self.rules.human_words)
                   if reasons else None)
        first_handoff = bool(reasons) and not conversation.handed_off
        conversation = replace(conversation, updated=now,
                               handed_off=conversation.handed_off or bool(reasons))
        self.store.save(conversation, stored.updated if stored else None)
        self._keep_record(conversation, stored is None, reasons if first_handoff else (), now)
        if now - self._purged > PURGE_EVERY_SECONDS:  # customers' words are not kept longer
            self._purged = now
            self.store.purge(now)
        return BotAnswer(conversation, stored is None, search_id, offers, answers,
                         tuple(reasons), summary)

    def _keep_record(self, conversation: Conversation, started: bool,
                     handoff: Sequence[Reason], now: float) -> None:
        """Record a start and a first hand-off for the analytics; a failure is only logged."""
        if not started and not handoff:
            return
        messages = [t.message for t in conversation.turns if t.message]
        language = detect_language(messages[-1]) if messages else None
        searches = [t.search_id for t in conversation.turns if t.search_id]
        person = customer_of(conversation.client, conversation.id)
        try:
            if started:
                self.handoffs.record_start(BotStart(
                    now, person, language, searches[0] if searches else None))
            if handoff:
                self.handoffs.record_handoff(BotHandoff(
                    now, person, language, tuple(r.code for r in handoff),
                    searches[-1] if searches else None))
        except StoreError as exc:  # the customer's answer matters more than the statistics
            log.warning("bot start or hand-off not recorded: %s", exc)

    def _record(self, conversation: Conversation, verdict: BotFeedback, client: str,
                now: float, caller: Caller | None) -> Conversation:
        last = next((t for t in reversed(conversation.turns) if t.offers), None)
        if last is None:
            raise UnknownAnswerError("feedback", "there is no answer in this conversation to "
                                     "give feedback on (it may have expired)")
        article_id = verdict.article_id or last.offers[0].article_id
        offer = next((o for o in last.offers if o.article_id == article_id), None)
        if offer is None:
            raise UnknownAnswerError("feedback.article_id", f"{article_id!r} was not offered "
                                     "in the last answer")
        if any(v.search_id == last.search_id and v.article_id == article_id
               and v.event == verdict.event for v in conversation.verdicts):
            return conversation  # a retried turn: counted once
        if last.search_id:
            try:
                self.service.record_feedback(last.search_id, article_id, verdict.event,
                                             offer.position, "bot", client, caller=caller)
            except DuplicateFeedbackError:
                pass
        return replace(conversation, verdicts=conversation.verdicts + (
            Verdict(now, article_id, verdict.event, last.search_id),))

    def _search(self, text: str, caller: Caller | None, client: str
                ) -> tuple[str, tuple[Offer, ...], dict[str, str]]:
        response = self.service.search(text, channel="bot", client=client, caller=caller,
                                       k=1 + self.alternatives)
        offers = tuple(
            Offer(r.article.id, r.article.title, round(r.hit.probability, 4), position)
            for position, r in enumerate(response.results, start=1)
        )
        answers = {r.article.id: short_answer(r.article.body, r.article.title, text)
                   for r in response.results}
        return response.search_id, offers, answers

    def _next_best(self, conversation: Conversation, caller: Caller | None
                   ) -> tuple[str | None, tuple[Offer, ...], dict[str, str]]:
        """Offer the articles of the latest search that the customer has not rejected."""
        last = next((t for t in reversed(conversation.turns) if t.message and t.offers), None)
        if last is None:
            return None, (), {}
        rejected = {v.article_id for v in conversation.verdicts if v.event in NEGATIVE}
        offered_first = {t.best.article_id for t in conversation.turns if t.best}
        remaining = tuple(o for o in last.offers
                          if o.article_id not in rejected and o.article_id not in offered_first)
        answers, available = {}, []
        for offer in remaining:
            try:
                article = self.service.article(offer.article_id, caller=caller)
            except ArticleNotFoundError:  # unpublished since the search
                continue
            available.append(offer)
            answers[offer.article_id] = short_answer(article.body, article.title, last.message)
        return last.search_id, tuple(available), answers

    @staticmethod
    def _add_turn(conversation: Conversation, turn: Turn) -> Conversation:
        return replace(conversation, turns=(conversation.turns + (turn,))[-MAX_TURNS_KEPT:])
