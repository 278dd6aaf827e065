"""Agent assist: find the customer's request in an e-mail, ticket or transcript, then search.

Long texts are mostly not the request: greetings, signatures, disclaimers, quoted history
and, in call transcripts, the agent's own lines. :func:`extract_request` masks those parts
(keeping character offsets, so the agent's screen can highlight the original text), splits
the rest into sentences, scores each sentence for how much it reads like a request or a
problem report, and builds the search query from the best ones. :func:`assist` then searches
(internal articles included for agents) and says which sentences of the text matched each
article, by the embedding model's similarity.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kbsearch.content.analysis import fold, words
from kbsearch.content.visibility import Caller
from kbsearch.errors import QueryError
from kbsearch.index.deadline import Deadline
from kbsearch.service import Result, SearchService

MAX_QUERY_SENTENCES = 3
MAX_SENTENCES = 60
MATCHES_PER_ARTICLE = 2
# how many standard deviations above its similarity to the knowledge base's articles in
# general a sentence must be to count as matching one article
MIN_SENTENCE_SPECIFICITY = 1.0
MIN_SIMILARITY_SPREAD = 0.01  # cosine; a flatter sentence is close to everything alike
MIN_ARTICLES_FOR_SPECIFICITY = 5
WRAPPED_LINE = 60  # a longer line without end punctuation continues on the next line

GREETING = re.compile(
    r"^(sehr geehrte|liebe[rs]?\b|hallo\b|hi\b|hey\b|guten (tag|morgen|abend)\b|moin\b|servus\b"
    r"|grüß gott|dear\b|hello\b|good (morning|afternoon|evening)\b)", re.I,
)
CLOSING = re.compile(
    r"^(mit (den )?(freundlichen|besten|herzlichen) grüßen|(freundliche|viele|beste|liebe"
    r"|herzliche|schöne|sonnige) grüße|mfg\b|lg\b|vg\b|gruß\b|grüße\b|kind regards|best regards"
    r"|warm regards|regards\b|best wishes|sincerely|yours (sincerely|truly)|cheers\b"
    r"|danke (und|&) grüße|vielen dank (im voraus|vorab)|many thanks in advance"
    r"|thanks in advance)", re.I,
)
SIGNATURE_DELIMITER = re.compile(r"^--\s?$|^_{5,}$")
HISTORY = re.compile(
    r"^(-{2,}\s*(original message|ursprüngliche nachricht|forwarded message"
    r"|weitergeleitete nachricht)\s*-{2,}|am .{3,80} schrieb .{1,80}:\s*$"
    r"|on .{3,80} wrote:\s*$|von:\s.+|from:\s.+@.+)", re.I,
)
BOILERPLATE = re.compile(
    r"^(gesendet (von|mit) meinem|sent from my|diese e-mail (enthält|kann)|this (e-)?mail "
    r"(and any|is confidential|may contain)|bitte denken sie an die umwelt"
    r"|please consider the environment)", re.I,
)
HEADER = re.compile(r"^(betreff|subject|an|to|cc|datum|date|gesendet|sent)\s*:\s*", re.I)
LABEL = re.compile(  # a header or speaker label before the words themselves
    r"(\[?\d{1,2}:\d{2}(:\d{2})?\]?\s*)?(betreff|subject|kunde|kundin|customer|anrufer"
    r"|anruferin|caller|client|user|nutzer|nutzerin)\s*:\s*", re.I,
)
FIELD_LINE = re.compile(r"^[\w .\-/]{1,30}:\s*[\w\-/ ]*\d[\w\-/ ]*$")
SPEAKER = re.compile(
    r"^\s*(\[?\d{1,2}:\d{2}(:\d{2})?\]?\s*)?(?P<who>[A-Za-zÄÖÜäöüß][\wÄÖÜäöüß .]{0,24}?)\s*:"
    r"\s+(?P<said>\S.*)$"
)
CUSTOMER_SPEAKERS = frozenset({
    "kunde", "kundin", "customer", "anrufer", "anruferin", "caller", "client", "user",
    "nutzer", "nutzerin",
})
AGENT_SPEAKERS = frozenset({
    "agent", "agentin", "mitarbeiter", "mitarbeiterin", "berater", "beraterin", "service",
    "support", "kundenservice", "bot", "chatbot", "system", "operator", "nordwerk",
})
REQUEST_CUES = frozenset(fold(w) for w in (
    "bitte", "möchte", "möchten", "würde", "gerne", "gern", "wie", "warum", "wieso", "weshalb",
    "wann", "was", "wo", "welche", "welcher", "kann", "können", "könnten", "muss", "brauche",
    "benötige", "soll", "how", "why", "when", "what", "where", "which", "can", "could",
    "would", "want", "need", "please", "help", "hilfe",
))
PROBLEM_CUES = frozenset(fold(w) for w in (
    "nicht", "kein", "keine", "keinen", "fehler", "störung", "problem", "probleme", "kaputt",
    "ausgefallen", "falsch", "hoch", "doppelt", "abgebucht", "gesperrt", "leider", "trotz",
    "immer", "noch", "seit", "not", "no", "error", "broken", "wrong", "fails", "failed",
    "doesn", "didn", "won", "cannot", "can't", "still", "since", "twice", "charged",
))
PLEASANTRY = re.compile(
    r"\b(ich hoffe|hoffe,? (es geht|sie hatten)|vielen dank für ihre|danke für ihre"
    r"|i hope (you|this)|thank you for your|thanks for your)", re.I,
)


@dataclass(frozen=True)
class Sentence:
    """A sentence of the customer's text with its character span in the original."""

    text: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class ExtractedRequest:
    """What the customer asks, found in a long text."""

    query: str
    sentences: tuple[Sentence, ...]
    picked: tuple[int, ...]
    removed: dict[str, int]


def _lines(text: str) -> list[tuple[int, int]]:
    """Return the (start, end) span of every line, newline excluded."""
    spans, start = [], 0
    for line in text.split("\n"):
        spans.append((start, start + len(line)))
        start += len(line) + 1
    return spans


def _speaker(line: str) -> str | None:
    match = SPEAKER.match(line)
    if not match:
        return None
    who = fold(match.group("who").strip().split()[0])
    return who if who in CUSTOMER_SPEAKERS | AGENT_SPEAKERS else None


def _keep_mask(text: str, spans: Sequence[tuple[int, int]]) -> tuple[list[bool], Counter]:
    """Decide for each line whether it is part of the customer's own message."""
    lines = [text[s:e] for s, e in spans]
    keep = [bool(line.strip()) for line in lines]
    removed: Counter = Counter()
    speakers = [_speaker(line) for line in lines]
    transcript = sum(s is not None for s in speakers) >= 2
    if transcript:
        current = None
        for i, who in enumerate(speakers):
            current = who or current
            if current in AGENT_SPEAKERS and keep[i]:
                keep[i] = False
                removed["agent_lines"] += 1
        return keep, removed
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(">"):
            if keep[i]:
                removed["quoted_lines"] += 1
            keep[i] = False
    own = [i for i, k in enumerate(keep) if k]
    history = next((i for i in own if HISTORY.match(lines[i].strip())), None)
    if history is not None and any(keep[:history]):
        for i in range(history, len(lines)):
            if keep[i]:
                removed["quoted_lines"] += 1
            keep[i] = False
    seen_content = False
    for i, line in enumerate(lines):
        if not keep[i]:
            continue
        stripped = line.strip()
        if SIGNATURE_DELIMITER.match(stripped) or (
            seen_content and CLOSING.match(stripped) and len(stripped.split()) <= 7
        ):
            for j in range(i, len(lines)):
                if keep[j]:
                    removed["signature_lines"] += 1
                keep[j] = False
            break
        if BOILERPLATE.match(stripped):
            keep[i] = False
            removed["boilerplate_lines"] += 1
        elif GREETING.match(stripped) and len(stripped.split()) <= 6:
            keep[i] = False
            removed["greeting_lines"] += 1
        elif FIELD_LINE.match(stripped) and not HEADER.match(stripped):
            keep[i] = False
            removed["field_lines"] += 1
        else:
            seen_content = True
    return keep, removed


def _units(text: str, spans: Sequence[tuple[int, int]], keep: Sequence[bool]
           ) -> list[tuple[int, int]]:
    """Join kept lines into units that end at a short line, end punctuation or a gap."""
    units: list[tuple[int, int]] = []
    start: int | None = None
    previous_end = 0
    for (s, e), kept in zip(spans, keep, strict=True):
        line = text[s:e]
        if not kept:
            if start is not None:
                units.append((start, previous_end))
                start = None
            continue
        if start is None:
            start = s
        previous_end = e
        stripped = line.rstrip()
        if len(stripped) < WRAPPED_LINE or stripped.endswith((".", "!", "?", ":")):
            units.append((start, e))
            start = None
    if start is not None:
        units.append((start, previous_end))
    return units


def _score(sentence: str, position: int) -> float:
    """Score how much a sentence reads like the customer's request or problem."""
    tokens = words(sentence)
    if len(tokens) < 3:
        return 0.0
    score = 1.0
    if "?" in sentence:
        score += 2.0
    if any(t in REQUEST_CUES for t in tokens):
        score += 1.5
    if any(t in PROBLEM_CUES for t in tokens):
        score += 1.5
    if PLEASANTRY.search(sentence):
        score -= 2.5
    return max(0.0, score - 0.05 * position)


def extract_request(text: str, max_query_chars: int) -> ExtractedRequest:
    """Find the customer's request in a long text and build a search query from it."""
    spans = _lines(text)
    keep, removed = _keep_mask(text, spans)
    if not any(keep):  # everything looked like history or signature: search it all
        keep = [bool(text[s:e].strip()) for s, e in spans]
        removed = Counter()
    sentences: list[Sentence] = []
    for start, end in _units(text, spans, keep):
        unit = text[start:end]
        cuts = [0] + [m.end() for m in re.finditer(r"(?<=[.!?])\s+(?=[A-ZÄÖÜ0-9„\"'])", unit)]
        for a, b in zip(cuts, cuts[1:] + [len(unit)], strict=True):
            piece = unit[a:b]
            lead = len(piece) - len(piece.lstrip())
            label = LABEL.match(piece[lead:])
            lead += label.end() if label else 0
            clean = " ".join(piece[lead:].split())
            if not clean:
                continue
            sentences.append(Sentence(clean, start + a + lead, start + a + len(piece.rstrip()),
                                      _score(clean, len(sentences))))
            if len(sentences) >= MAX_SENTENCES:
                break
    order = sorted(range(len(sentences)), key=lambda i: (-sentences[i].score, i))
    picked: list[int] = []
    length = 0
    for i in order:
        if len(picked) == MAX_QUERY_SENTENCES or (picked and sentences[i].score <= 0):
            break
        extra = len(sentences[i].text) + (1 if picked else 0)
        if length + extra > max_query_chars:
            continue
        picked.append(i)
        length += extra
    picked.sort()
    query = " ".join(sentences[i].text for i in picked)
    if not query and sentences:
        query = sentences[0].text[:max_query_chars]
        picked = [0]
    return ExtractedRequest(query, tuple(sentences), tuple(picked), dict(removed))


@dataclass(frozen=True)
class AssistAnswer:
    """Articles for an agent with the sentences of the customer's text that matched them."""

    request: ExtractedRequest
    search_id: str
    results: tuple[Result, ...]
    matches: dict[str, list[tuple[int, float]]]


def assist(service: SearchService, text: object, caller: Caller | None, client: str, k: int,
           max_chars: int) -> AssistAnswer:
    """Extract the request from ``text``, search it for the caller, and match sentences.

    Raises QueryError naming ``text`` when it is missing, empty or longer than ``max_chars``.
    """
    if not isinstance(text, str) or not text.strip():
        raise QueryError("text", "is required: the e-mail, ticket or transcript to assist with")
    if len(text) > max_chars:
        raise QueryError("text", f"is {len(text)} characters long; at most {max_chars} allowed")
    normalised = text.replace("\r\n", " \n").replace("\r", "\n")  # offsets stay the same
    request = extract_request(normalised, service.settings.max_query_chars)
    if not request.query:
        raise QueryError("text", "contains no words to search for")
    deadline = Deadline.start(service.settings.search_time_limit)  # search and matching
    response = service.search(request.query, channel="agent", client=client, caller=caller, k=k,
                              deadline=deadline)
    matches = matching_sentences(
        service, [r.article.id for r in response.results], [s.text for s in request.sentences],
        MATCHES_PER_ARTICLE, deadline,
    )
    return AssistAnswer(request, response.search_id, response.results, matches)


def matching_sentences(
    service: SearchService, article_ids: Sequence[str], sentences: Sequence[str],
    per_article: int = 2, deadline: Deadline | None = None,
) -> dict[str, list[tuple[int, float]]]:
    """Return, per article, the sentences of a text that point to it, best first.

    Each match is (sentence number, cosine) by the embedding model, the same similarity
    that dense retrieval uses (best over the article's chunks); a sentence must stand out
    for the article against the whole knowledge base (see :func:`sentence_matches`).
    Articles not in the index get no matches. A long text is embedded a batch at a time;
    past the ``deadline`` after a batch, the rest is not (SearchTimeoutError).
    """
    if not article_ids or not sentences:
        return {a: [] for a in article_ids}
    index = service.index()
    batch = service.settings.batch_size
    parts = []
    for start in range(0, len(sentences), batch):
        parts.append(service.embedder.embed_queries(list(sentences[start:start + batch])))
        if deadline is not None:
            deadline.check("assist")
    vectors = np.asarray(np.concatenate(parts), dtype=np.float32)
    chunks = np.asarray(index.chunk_vectors, dtype=np.float32)
    starts = np.asarray(index.chunk_starts[:-1], dtype=np.int64)
    per_article_best = np.maximum.reduceat(vectors @ chunks.T, starts, axis=1)
    columns = [index.positions.get(a) for a in article_ids]
    picked = sentence_matches(per_article_best, columns, per_article)
    return dict(zip(article_ids, picked, strict=True))


def sentence_matches(
    similarity: np.ndarray, columns: Sequence[int | None], per_article: int
) -> list[list[tuple[int, float]]]:
    """Pick, for each wanted article, the sentences of a text that point to it, best first.

    ``similarity`` is (sentences, articles): each sentence's best cosine with each article of
    the knowledge base; ``columns`` names the wanted articles' columns (None: not indexed).
    A sentence counts for an article when its similarity to it, standardised over its
    similarities to all articles, is at least MIN_SENTENCE_SPECIFICITY: a greeting or a
    thank-you is about as close to every article and matches none, while "my router blinks
    red" stands out for the router articles. With fewer than
    MIN_ARTICLES_FOR_SPECIFICITY articles there is no background to compare with, and the
    closest sentences count. The spread is at least MIN_SIMILARITY_SPREAD, so that the
    small wobbles of a sentence that is alike to everything do not stand out. Each match
    is (sentence number, cosine).
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.ndim != 2 or similarity.shape[0] == 0:
        return [[] for _ in columns]
    if similarity.shape[1] >= MIN_ARTICLES_FOR_SPECIFICITY:
        spread = np.maximum(similarity.std(axis=1, keepdims=True), MIN_SIMILARITY_SPREAD)
        specificity = (similarity - similarity.mean(axis=1, keepdims=True)) / spread
        threshold = MIN_SENTENCE_SPECIFICITY
    else:
        specificity, threshold = similarity, -np.inf
    picked: list[list[tuple[int, float]]] = []
    for column in columns:
        if column is None:
            picked.append([])
            continue
        order = np.argsort(-specificity[:, column], kind="stable")[:per_article]
        picked.append([(int(i), round(float(similarity[i, column]), 4)) for i in order
                       if specificity[i, column] >= threshold])
    return picked

