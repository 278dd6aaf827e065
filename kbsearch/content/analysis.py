"""German and English text analysis: tokens, umlaut folding, compound splitting, stemming.

The same pure functions analyse articles at index time and queries at search time, so a
query word and an article word meet in one normal form:

- lowercase, then ä→ae, ö→oe, ü→ue, ß→ss (so "Zähler", "Zaehler" and "ZAEHLER" agree);
- German compounds are split into parts found in the knowledge base's own vocabulary
  ("zaehlerstandsmeldung" → "zaehlerstand", "meldung", "zaehler", "stand"), keeping the
  compound itself, so "Zähler" finds "Zählerstand" and the other way round;
- Snowball stemming (German or English; the German stemmer also reads ae/oe/ue as umlauts);
- the knowledge base's synonym rules (``articles/synonyms.txt``, parsed by
  :mod:`kbsearch.content.synonyms`), matched on the words' stems, so inflections meet too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import Stemmer
from whoosh.analysis import Composable, RegexTokenizer
from whoosh.lang.stopwords import stoplists

WORD = re.compile(r"\w+(?:[-'’]\w+)*", re.UNICODE)
FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "’": "'"})
_FOLD_LETTERS = tuple((chr(code), str(spelled)) for code, spelled in FOLD.items())
# Linking elements (Fugen) between the parts of a German compound.
LINKS = ("", "s", "es", "n", "en", "e", "er")
MIN_PART = 3
MIN_COMPOUND = 7
MAX_PARTS = 4
SEGMENT_CACHE = 65536  # segmentations cached per lexicon
WORD_TERMS_CACHE = 65536  # a word's stem and compound parts, cached per lexicon
STEM_CACHE = 131072  # stems of (word, language)
JOINERS = re.compile(r"[-'’]")
LANGUAGES = ("de", "en")
STEMMER_NAMES = {"de": "german", "en": "english"}

_EXTRA_STOPWORDS = {
    "de": {"bitte", "ich", "mein", "meine", "meinen", "meinem", "kann", "wie", "was", "wo",
           "wann", "warum", "gibt", "man", "mehr", "schon", "mal", "denn", "eigentlich"},
    "en": {"i", "my", "me", "how", "what", "where", "when", "why", "do", "does", "can",
           "please", "get"},
}


def fold(word: str) -> str:
    """Lowercase a word (or a text) and spell umlauts and ß as two letters.

    The same as ``word.lower().translate(FOLD)``; one ``replace`` per letter of FOLD runs
    in C over the whole string, where ``translate`` with a table of strings looks up every
    character in Python's dict (1.1 against 0.25 µs a word, 16 times slower on an article).
    """
    low = word.lower()
    if low.isascii():
        return low
    for letter, spelled in _FOLD_LETTERS:
        low = low.replace(letter, spelled)
    return low


@functools.cache
def stopwords(language: str) -> frozenset[str]:
    """Return the folded stop words of a language."""
    words = set(stoplists.get(language, ())) | _EXTRA_STOPWORDS.get(language, set())
    return frozenset(fold(word) for word in words)


@functools.cache
def _stemmer(language: str) -> Stemmer.Stemmer:
    stemmer = Stemmer.Stemmer(STEMMER_NAMES[language])
    # :func:`stem` keeps the stems; PyStemmer's own cache would keep a list per word as
    # well (10,000 words), objects that every full garbage collection walks
    stemmer.maxCacheSize = 0
    return stemmer


@functools.lru_cache(maxsize=STEM_CACHE)
def stem(word: str, language: str) -> str:
    """Return the Snowball stem of a folded word."""
    return _stemmer(language).stemWord(word)


def words(text: str) -> list[str]:
    """Split text into folded words; hyphenated words also yield their parts."""
    out: list[str] = []
    for match in WORD.finditer(text):
        token = fold(match.group())
        if "-" not in token and "'" not in token:
            out.append(token)
            continue
        pieces = JOINERS.split(token)
        out.append(token.replace("-", "").replace("'", ""))
        out.extend(piece for piece in pieces if piece)
    return out


@dataclass(frozen=True)
class Lexicon:
    """Known German words of a knowledge base, used to split compounds into parts.

    Each lexicon keeps its own cache of segmentations (``SEGMENT_CACHE`` words). A cache
    shared by all lexicons and keyed by the word set would compare two equal sets element
    by element on every look-up once a reindex or a reload has built an equal lexicon
    again: that made an incremental build five times slower than the first, and worse
    the larger the vocabulary.
    """

    words: frozenset[str]
    _segments: Callable[[str, bool], tuple[str, ...] | None] = field(
        init=False, repr=False, compare=False, hash=False)
    _word_terms: Callable[[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = field(
        init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        """Give this lexicon its own bounded caches of segmentations and word terms."""
        object.__setattr__(self, "_segments",
                           functools.lru_cache(maxsize=SEGMENT_CACHE)(self._segment))
        object.__setattr__(self, "_word_terms",
                           functools.lru_cache(maxsize=WORD_TERMS_CACHE)(self._terms_of))

    def word_terms(self, word: str, language: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Return a folded word's stem (as a 1-tuple) and the stems of its compound parts.

        Cached: an article's words repeat, and analysing them was most of an index build.
        """
        return self._word_terms(word, language)

    def _terms_of(self, word: str, language: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        parts = self.split(word) if language == "de" else ()
        return (stem(word, language),), tuple(stem(part, language) for part in parts)

    def __reduce__(self) -> tuple[type[Lexicon], tuple[frozenset[str]]]:
        """Pickle the words only (Whoosh stores the analyser, lexicon included, in the index)."""
        return (Lexicon, (self.words,))

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Lexicon:
        """Collect the vocabulary (folded, no stop words) of German texts."""
        tokens: set[str] = set()
        for text in texts:
            tokens.update(WORD.findall(text))
        seen: set[str] = set()
        capitalised: set[str] = set()
        for token in tokens:  # each distinct spelling once
            for piece in JOINERS.split(token):
                if not piece.isalpha():
                    continue
                folded = fold(piece)
                seen.add(folded)
                if piece[0].isupper():
                    capitalised.add(folded)
        stop = stopwords("de")
        known = {
            word
            for word in seen
            if word not in stop
            and (len(word) >= MIN_PART + 1 or (len(word) == MIN_PART and word in capitalised))
        }
        return cls(frozenset(known))

    def split(self, word: str) -> tuple[str, ...]:
        """Return the parts of a compound (all levels), or () when it is no compound."""
        if len(word) < MIN_COMPOUND or not word.isalpha():
            return ()
        return self._split(word)

    def _segment(self, word: str, whole_ok: bool) -> tuple[str, ...] | None:
        """Split a word into the fewest lexicon parts, longest first part on ties.

        With ``whole_ok`` a word found in the lexicon is its own one-part segmentation.
        """
        lexicon = self.words
        if whole_ok and word in lexicon:
            return (word,)
        best: tuple[str, ...] | None = None
        for end in range(len(word) - MIN_PART, MIN_PART - 1, -1):
            head = word[:end]
            for link in LINKS:
                if not head.endswith(link):
                    continue
                part = head[: len(head) - len(link)]
                if len(part) < MIN_PART or part not in lexicon:
                    continue
                rest = self._segments(word[end:], True)
                if rest is None:
                    continue
                candidate = (part, *rest)
                if len(candidate) <= MAX_PARTS and (best is None or len(candidate) < len(best)):
                    best = candidate
            if best is not None and len(best) == 2:
                break
        return best

    def _split(self, word: str) -> tuple[str, ...]:
        parts: list[str] = []
        for part in self._segments(word, False) or ():
            parts.append(part)
            if len(part) >= MIN_COMPOUND:
                parts.extend(self._split(part))
        return tuple(dict.fromkeys(parts))


EMPTY_LEXICON = Lexicon(frozenset())


@dataclass(frozen=True)
class Rewrite:
    """What a synonym rule does where it matches: the one-word entries it adds, and
    whether the matched words stay (equivalent entries) or go (a ``=>`` replacement)."""

    words: tuple[str, ...]
    keep: bool


@dataclass(frozen=True)
class SynonymMap:
    """One language's synonym rules, keyed by the stems of the words each one matches.

    Keys hold the stems of every word of an entry, stop words included, so that a
    multi-word entry ("ziehe um") matches those words in sequence.
    """

    rules: tuple[tuple[tuple[str, ...], Rewrite], ...] = ()

    @functools.cached_property
    def _lookup(self) -> Mapping[tuple[str, ...], Rewrite]:
        """Return the rules as a mapping (made once)."""
        return dict(self.rules)

    @functools.cached_property
    def longest(self) -> int:
        """Return the most words any entry has."""
        return max((len(key) for key, _ in self.rules), default=0)

    def match(self, stems: Sequence[str], start: int) -> tuple[int, Rewrite] | None:
        """Return the longest rule matching the words from ``start`` on, with its length."""
        for length in range(min(self.longest, len(stems) - start), 0, -1):
            rewrite = self._lookup.get(tuple(stems[start : start + length]))
            if rewrite is not None:
                return length, rewrite
        return None


NO_SYNONYMS = SynonymMap()


class Slot(NamedTuple):
    """The terms of one word, or of the words one synonym rule matched.

    ``alternatives`` are the word's stem (or the matched words' stems) and the stems of the
    words a synonym rule adds: any of them is the same word. ``parts`` are the stems of
    the compound parts of the text's own words.
    """

    start: int
    alternatives: tuple[str, ...]
    parts: tuple[str, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        """Return every term of the slot, alternatives first."""
        return (*self.alternatives, *self.parts)


def _word_slot(start: int, words_: Sequence[str], language: str, lexicon: Lexicon,
               added: Sequence[str] = ()) -> Slot:
    """Return the slot of words and the words a synonym rule adds in their place."""
    if len(words_) == 1 and not added:
        alternatives, parts_ = lexicon.word_terms(words_[0], language)
        return Slot(start, alternatives, parts_)
    stems = [stem(word, language) for word in (*words_, *added)]
    parts = [stem(part, language) for word in words_
             for part in (lexicon.split(word) if language == "de" else ())]
    return Slot(start, tuple(dict.fromkeys(stems)), tuple(parts))


def term_slots(
    found: Sequence[str], language: str, lexicon: Lexicon = EMPTY_LEXICON,
    synonyms: SynonymMap = NO_SYNONYMS, query: bool = False,
) -> list[Slot]:
    """Return the terms of folded words, one slot per word that is no stop word.

    Where a synonym rule matches (the longest entry first), the matched words make one
    slot with the words the rule adds (the matched words stay unless it replaces them).
    In an article (``query`` false) a one-word entry of equivalent entries stays as it
    is: the query brings its equivalents, so each keeps its own document frequency.
    """
    stop = stopwords(language)
    stems = [stem(word, language) for word in found] if synonyms.rules else []
    slots: list[Slot] = []
    i = 0
    while i < len(found):
        hit = synonyms.match(stems, i) if synonyms.rules else None
        if hit is not None and hit[0] == 1 and hit[1].keep and not query:
            hit = None
        if hit is None:
            if found[i] not in stop:
                slots.append(_word_slot(i, (found[i],), language, lexicon))
            i += 1
            continue
        length, rewrite = hit
        kept = [w for w in found[i : i + length] if w not in stop] if rewrite.keep else []
        added = [w for w in rewrite.words if w not in stop]
        if kept or added:
            slots.append(_word_slot(i, kept, language, lexicon, added))
        i += length
    return slots


def analyze(
    text: str, language: str, lexicon: Lexicon = EMPTY_LEXICON,
    synonyms: SynonymMap = NO_SYNONYMS,
) -> list[str]:
    """Return the index terms of a text: folded, stop words out, compounds split, stemmed."""
    return [t for slot in term_slots(words(text), language, lexicon, synonyms)
            for t in slot.terms]


def query_term_groups(
    text: str, language: str, lexicon: Lexicon = EMPTY_LEXICON,
    synonyms: SynonymMap = NO_SYNONYMS,
) -> list[tuple[str, ...]]:
    """Return a query's terms as groups of alternatives, distinct, in first-seen order.

    A word's stem and the stems of its synonyms are one group (any of them is the same
    word, so they count once when the query is scored); every compound part is a group of
    its own.
    """
    groups: list[tuple[str, ...]] = []
    for slot in term_slots(words(text), language, lexicon, synonyms, query=True):
        groups.append(slot.alternatives)
        groups.extend((part,) for part in slot.parts)
    if not groups:  # a query of stop words only ("Wie geht das?") still searches its words
        groups = [(stem(word, language),) for word in words(text)]
    return list(dict.fromkeys(groups))


def query_terms(
    text: str, language: str, lexicon: Lexicon = EMPTY_LEXICON,
    synonyms: SynonymMap = NO_SYNONYMS,
) -> list[str]:
    """Return the distinct index terms of a query in first-seen order."""
    groups = query_term_groups(text, language, lexicon, synonyms)
    return list(dict.fromkeys(t for group in groups for t in group))


class KbAnalyzer(Composable):
    """Whoosh analyzer running :func:`term_slots`, with positions for each term."""

    def __init__(
        self, language: str, lexicon: Lexicon = EMPTY_LEXICON,
        synonyms: SynonymMap = NO_SYNONYMS,
    ) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"no analyzer for language {language!r}")
        self.language = language
        self.lexicon = lexicon
        self.synonyms = synonyms
        self._tokenizer = RegexTokenizer(WORD.pattern)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, KbAnalyzer)
            and other.language == self.language
            and other.lexicon == self.lexicon
            and other.synonyms == self.synonyms
        )

    def __hash__(self) -> int:
        return hash((self.language, len(self.lexicon.words), len(self.synonyms.rules)))

    def __call__(self, value: str, **kwargs: object) -> Iterator:
        """Yield Whoosh tokens; compound parts and synonyms share their word's position."""
        kwargs.pop("tokenize", None)
        found: list[str] = []
        spans: list[tuple[int, int]] = []
        token = None
        for token in self._tokenizer(value, **kwargs):
            for word in words(token.text):
                found.append(word)
                spans.append((getattr(token, "startchar", 0), getattr(token, "endchar", 0)))
        if token is None:
            return
        chars = bool(kwargs.get("chars"))
        for position, slot in enumerate(term_slots(found, self.language, self.lexicon,
                                                   self.synonyms)):
            for text in slot.terms:
                token.text = text
                token.pos = position
                token.stopped = False
                if chars:
                    token.startchar, token.endchar = spans[slot.start]
                yield token


UMLAUTS = re.compile(r"[äöüßÄÖÜ]")  # only German writes them, in a short text too


def detect_language(text: str, default: str = "de") -> str:
    """Guess whether a text is German or English (umlauts decide short texts)."""
    if len(text.strip()) < 3 and not UMLAUTS.search(text):
        return default
    return confident_language(text, confidence=0.0) or default


def confident_language(text: str, confidence: float = 0.8) -> str | None:
    """Return a text's language where it is clear (umlauts, or the identifier at least
    ``confidence`` sure), else None: "Router blinkt" reads as English at 0.52."""
    if UMLAUTS.search(text):
        return "de"
    label, probability = _identifier().classify(text)
    return label if label in LANGUAGES and probability >= confidence else None


@functools.cache
def _identifier():  # noqa: ANN202 - py3langid has no types
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(LANGUAGES))
    return identifier


def snippet_terms(query: str) -> Sequence[str]:
    """Return folded query words worth highlighting (no stop words, 3+ letters)."""
    stop = stopwords("de") | stopwords("en")
    return [w for w in dict.fromkeys(words(query)) if w not in stop and len(w) >= 3]
