"""German and English text analysis: tokens, umlaut folding, compound splitting, stemming.

The same pure functions analyse articles at index time and queries at search time, so a
query word and an article word meet in one normal form:

- lowercase, then ä→ae, ö→oe, ü→ue, ß→ss (so "Zähler", "Zaehler" and "ZAEHLER" agree);
- German compounds are split into parts found in the knowledge base's own vocabulary
  ("zaehlerstandsmeldung" → "zaehlerstand", "meldung", "zaehler", "stand"), keeping the
  compound itself, so "Zähler" finds "Zählerstand" and the other way round;
- Snowball stemming (German or English; the German stemmer also reads ae/oe/ue as umlauts).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import Stemmer
from whoosh.analysis import Composable, RegexTokenizer
from whoosh.lang.stopwords import stoplists

WORD = re.compile(r"\w+(?:[-'’]\w+)*", re.UNICODE)
FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "’": "'"})
# Linking elements (Fugen) between the parts of a German compound.
LINKS = ("", "s", "es", "n", "en", "e", "er")
MIN_PART = 3
MIN_COMPOUND = 7
MAX_PARTS = 4
LANGUAGES = ("de", "en")
STEMMER_NAMES = {"de": "german", "en": "english"}

_EXTRA_STOPWORDS = {
    "de": {"bitte", "ich", "mein", "meine", "meinen", "meinem", "kann", "wie", "was", "wo",
           "wann", "warum", "gibt", "man", "mehr", "schon", "mal", "denn", "eigentlich"},
    "en": {"i", "my", "me", "how", "what", "where", "when", "why", "do", "does", "can",
           "please", "get"},
}


def fold(word: str) -> str:
    """Lowercase a word and spell umlauts and ß as two letters."""
    return word.lower().translate(FOLD)


@functools.cache
def stopwords(language: str) -> frozenset[str]:
    """Return the folded stop words of a language."""
    words = set(stoplists.get(language, ())) | _EXTRA_STOPWORDS.get(language, set())
    return frozenset(fold(word) for word in words)


@functools.cache
def _stemmer(language: str) -> Stemmer.Stemmer:
    return Stemmer.Stemmer(STEMMER_NAMES[language])


def stem(word: str, language: str) -> str:
    """Return the Snowball stem of a folded word."""
    return _stemmer(language).stemWord(word)


def words(text: str) -> list[str]:
    """Split text into folded words; hyphenated words also yield their parts."""
    out: list[str] = []
    for match in WORD.finditer(text):
        token = fold(match.group())
        pieces = re.split(r"[-'’]", token)
        if len(pieces) > 1:
            out.append(token.replace("-", "").replace("'", ""))
            out.extend(piece for piece in pieces if piece)
        else:
            out.append(token)
    return out


@dataclass(frozen=True)
class Lexicon:
    """Known German words of a knowledge base, used to split compounds into parts."""

    words: frozenset[str]

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Lexicon:
        """Collect the vocabulary (folded, no stop words) of German texts."""
        counts: Counter[str] = Counter()
        capitalised: set[str] = set()
        for text in texts:
            for match in WORD.finditer(text):
                token = match.group()
                for piece in re.split(r"[-'’]", token):
                    if not piece.isalpha():
                        continue
                    folded = fold(piece)
                    counts[folded] += 1
                    if piece[0].isupper():
                        capitalised.add(folded)
        stop = stopwords("de")
        known = {
            word
            for word in counts
            if word not in stop
            and (len(word) >= MIN_PART + 1 or (len(word) == MIN_PART and word in capitalised))
        }
        return cls(frozenset(known))

    def split(self, word: str) -> tuple[str, ...]:
        """Return the parts of a compound (all levels), or () when it is no compound."""
        if len(word) < MIN_COMPOUND or not word.isalpha():
            return ()
        return _split(word, self.words)


@functools.lru_cache(maxsize=65536)
def _segment(word: str, lexicon: frozenset[str], whole_ok: bool) -> tuple[str, ...] | None:
    """Split a word into the fewest lexicon parts, longest first part on ties.

    With ``whole_ok`` a word found in the lexicon is its own one-part segmentation.
    """
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
            rest = _segment(word[end:], lexicon, True)
            if rest is None:
                continue
            candidate = (part, *rest)
            if len(candidate) <= MAX_PARTS and (best is None or len(candidate) < len(best)):
                best = candidate
        if best is not None and len(best) == 2:
            break
    return best


def _split(word: str, lexicon: frozenset[str]) -> tuple[str, ...]:
    parts: list[str] = []
    for part in _segment(word, lexicon, False) or ():
        parts.append(part)
        if len(part) >= MIN_COMPOUND:
            parts.extend(_split(part, lexicon))
    return tuple(dict.fromkeys(parts))


EMPTY_LEXICON = Lexicon(frozenset())


def analyze(text: str, language: str, lexicon: Lexicon = EMPTY_LEXICON) -> list[str]:
    """Return the index terms of a text: folded, stop words out, compounds split, stemmed."""
    stop = stopwords(language)
    terms: list[str] = []
    for word in words(text):
        if word in stop:
            continue
        terms.append(stem(word, language))
        if language == "de":
            terms.extend(stem(part, language) for part in lexicon.split(word))
    return terms


def query_terms(text: str, language: str, lexicon: Lexicon = EMPTY_LEXICON) -> list[str]:
    """Return the distinct index terms of a query in first-seen order."""
    terms = analyze(text, language, lexicon)
    if not terms:  # a query of stop words only ("Wie geht das?") still searches its words
        terms = [stem(word, language) for word in words(text)]
    return list(dict.fromkeys(terms))


class KbAnalyzer(Composable):
    """Whoosh analyzer running :func:`analyze`, with positions for each term."""

    def __init__(self, language: str, lexicon: Lexicon = EMPTY_LEXICON) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"no analyzer for language {language!r}")
        self.language = language
        self.lexicon = lexicon
        self._tokenizer = RegexTokenizer(WORD.pattern)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, KbAnalyzer)
            and other.language == self.language
            and other.lexicon == self.lexicon
        )

    def __hash__(self) -> int:
        return hash((self.language, len(self.lexicon.words)))

    def __call__(self, value: str, **kwargs: object) -> Iterator:
        """Yield Whoosh tokens; compound parts share the position of their compound."""
        stop = stopwords(self.language)
        kwargs.pop("tokenize", None)
        position = 0
        for token in self._tokenizer(value, **kwargs):
            for word in words(token.text):
                if word in stop:
                    continue
                parts = self.lexicon.split(word) if self.language == "de" else ()
                for text in (word, *parts):
                    token.text = stem(text, self.language)
                    token.pos = position
                    token.stopped = False
                    yield token
                position += 1


def detect_language(text: str, default: str = "de") -> str:
    """Guess whether a text is German or English (umlauts decide short texts)."""
    if re.search(r"[äöüßÄÖÜ]", text):
        return "de"
    if len(text.strip()) < 3:
        return default
    label, _ = _identifier().classify(text)
    return label if label in LANGUAGES else default


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
