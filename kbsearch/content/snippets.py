"""What a result shows of an article: the sentence or passage that matches the query.

One scoring rule for every channel: a sentence scores one point per query term that one of
its words starts with, compared folded (ä = ae, ß = ss, lower case) and by the term's
beginning (all but its last two letters, at least four), so that "Zählerstände" finds
"Zählerstand". The search results' snippets, the chatbot's short answers and the FAQ page's
highlighting all use :func:`match_prefixes` and :func:`shared_terms`. Search results
score an article's sentences all at once: its text is folded once, and each query word's
beginning is found in it with ``str.find``, instead of being tried against every word of
every sentence (folding each word of a long article in Python cost about 1 ms).
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from typing import NamedTuple

from kbsearch.content.analysis import fold, snippet_terms
from kbsearch.content.articles import Article
from kbsearch.content.chunking import plain_text
from kbsearch.content.markdown import plain

SNIPPET_CHARS = 240
TEASER_CHARS = 180
SHORT_ANSWER_CHARS = 320
WORD = re.compile(r"\w+")
SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n+")


def match_prefixes(query: str) -> list[str]:
    """Return the folded word beginnings by which sentences match a query."""
    return list(_prefixes(query))


def shared_terms(sentence: str, prefixes: Sequence[str]) -> int:
    """Return how many of the query's word beginnings start a word of the sentence."""
    return _shared(frozenset(WORD.findall(fold(sentence))), prefixes)


def _shared(tokens: frozenset[str], prefixes: Sequence[str]) -> int:
    return sum(any(t.startswith(p) for t in tokens) for p in prefixes)


class _Sentences(NamedTuple):
    """A text's sentences, and the same sentences folded, one per line, as one string.

    ``starts[j]`` is where sentence ``j`` begins in ``folded``.
    """

    sentences: tuple[str, ...]
    folded: str
    starts: tuple[int, ...]

    def scores(self, prefixes: Sequence[str]) -> list[int]:
        """Return per sentence how many of the prefixes start one of its words.

        Each prefix is looked for in the folded text at once (``str.find``), and counts
        where no word character precedes it (a word's beginning); the same count as
        :func:`shared_terms` gives each sentence. A prefix with a character that no word
        has matches nothing.
        """
        counts = [0] * len(self.sentences)
        for prefix in prefixes:
            if not WORD.fullmatch(prefix):
                continue
            found = set()
            at = self.folded.find(prefix)
            while at >= 0:
                if at == 0 or not _word_character(self.folded[at - 1]):
                    found.add(bisect.bisect_right(self.starts, at) - 1)
                at = self.folded.find(prefix, at + 1)
            for sentence in found:
                counts[sentence] += 1
        return counts


def _word_character(character: str) -> bool:
    """Return whether ``\\w`` matches a character (what Python's ``re`` counts as one)."""
    return character.isalnum() or character == "_"


def _sentences(text: str) -> _Sentences:
    """Return a text's sentences, also folded (kept: articles are searched often)."""
    return _Sentences(*_sentence_parts(text))


# The caches below hold strings and plain tuples of strings and numbers only: the garbage
# collector stops tracking those after one pass, so however many articles a long-running
# server has shown, a full collection does not walk them (a named tuple or an Article kept
# as a key would be one more object each to walk).
@functools.lru_cache(maxsize=8192)
def _sentence_parts(text: str) -> tuple[tuple[str, ...], str, tuple[int, ...]]:
    sentences = tuple(s for s in (part.strip() for part in SENTENCE_END.split(text)) if s)
    folded = [fold(sentence) for sentence in sentences]
    starts = [0]
    for sentence in folded[:-1]:
        starts.append(starts[-1] + len(sentence) + 1)
    return sentences, "\n".join(folded), tuple(starts)


@functools.lru_cache(maxsize=1024)
def _prefixes(query: str) -> tuple[str, ...]:
    """Return (kept for the other results of the same search) a query's word beginnings."""
    return tuple(w[: max(4, len(w) - 2)] for w in snippet_terms(query))


def shorten(text: str, length: int) -> str:
    """Cut text at the last space before ``length`` characters and add an ellipsis."""
    if len(text) <= length:
        return text
    cut = text.rfind(" ", 0, length - 1)
    return text[: cut if cut > 0 else length - 1].rstrip(",;:") + "…"


def make_snippet(text: str, query: str, fallback: str = "", length: int = SNIPPET_CHARS) -> str:
    """Return the sentence of ``text`` that shares most words with the query, shortened.

    Of equal sentences the first; with no shared word, ``fallback`` or the first sentence.
    """
    index = _sentences(text)
    best, best_score = "", 0
    for sentence, score in zip(index.sentences, index.scores(_prefixes(query)), strict=True):
        if score > best_score:
            best, best_score = sentence, score
    if not best:
        best = fallback or (index.sentences[0] if index.sentences else "")
    return shorten(" ".join(best.split()), length)


def article_text(article: Article) -> str:
    """Return an article's plain text without its title line (kept for the next search)."""
    return _text_without_title(article.title, article.body)


@functools.lru_cache(maxsize=8192)
def _text_without_title(title: str, body: str) -> str:
    lines = [ln for ln in plain_text(plain(body)).split("\n") if ln.strip() != title]
    return "\n".join(lines).strip()


def article_snippet(article: Article, query: str, length: int = SNIPPET_CHARS) -> str:
    """Return the snippet of an article for a query (its opening paragraph if nothing matches)."""
    body = article_text(article)
    first = body.split("\n\n", 1)[0] if body else ""
    return make_snippet(body, query, fallback=first, length=length)


def teaser(article: Article, length: int = TEASER_CHARS) -> str:
    """Return the first paragraph of an article's text (without its title), shortened."""
    body = article_text(article)
    first = body.split("\n\n", 1)[0] if body else ""
    return make_snippet(first, "", fallback=first, length=length)


def _answer_blocks(markdown: str, title: str) -> list[list[str]]:
    """Return the article's paragraphs and lists as lists of sentences, headings left out."""
    blocks: list[list[str]] = []
    for block in re.split(r"\n\s*\n", markdown):
        lines = [ln for ln in block.split("\n")
                 if ln.strip() and not ln.lstrip().startswith(("#", "|"))]
        text = plain_text("\n".join(lines))
        sentences = [
            " ".join(s.split())
            for line in text.split("\n")
            for s in re.split(r"(?<=[.!?])\s+", line)
            if len(s.split()) >= 3 and " ".join(s.split()) != title
        ]
        if sentences:
            blocks.append(sentences)
    return blocks


def short_answer(markdown: str, title: str, query: str, limit: int = SHORT_ANSWER_CHARS) -> str:
    """Extract a short answer from an article: the passage that best matches the question.

    Sentences that start a thought (a capital letter or a digit) are scored by the query
    words they share (as snippets are); the best one is continued with the rest of its
    paragraph or list up to ``limit`` characters. With no shared word the article's opening
    paragraph is used. Headings and tables are left out; so are HTML markup and script
    text (plain text, as snippets).
    """
    blocks = _answer_blocks(plain(markdown), title)
    if not blocks:
        return ""
    prefixes = match_prefixes(query)
    best, best_score = (0, 0), 0
    for b, sentences in enumerate(blocks):
        for i, sentence in enumerate(sentences):
            if not (sentence[0].isupper() or sentence[0].isdigit()):
                continue
            score = shared_terms(sentence, prefixes)
            if score > best_score:
                best, best_score = (b, i), score
    block, start = best
    answer = blocks[block][start]
    for sentence in blocks[block][start + 1:]:
        if len(answer) + 1 + len(sentence) > limit:
            break
        answer += " " + sentence
    return shorten(answer, limit)
