"""The knowledge base's synonyms file, in the Solr / Elasticsearch format, parsed strictly.

``articles/synonyms.txt``, one rule a line; blank lines and lines starting with ``#`` are
skipped::

    # equivalent entries: a query with one of them searches all of them
    Zähler, Stromuhr, Gasuhr
    # replacement: the entries on the left are searched (and indexed) as the right
    teuer, kostspielig => Preis

Entries are analysed like every other text (folded, stemmed in each language), so
"Zählers" meets "Zähler" and "ziehen um" meets "ziehe um". An entry may have several
words: it then matches those words in sequence, stop words included (German separates
verbs from their prefix: "ich ziehe um"). What a rule puts in place are always single
words: the right side of ``=>`` must be one-word entries, and a line of equivalent entries
needs at least one. How the rules apply (queries expand equivalents, articles get
replacements and the words of multi-word matches) is in :func:`analysis.term_slots`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from kbsearch.content.analysis import (
    LANGUAGES,
    WORD,
    Rewrite,
    SynonymMap,
    stem,
    stopwords,
    words,
)
from kbsearch.errors import SynonymsError

SYNONYMS_FILE = "synonyms.txt"
ARROW = "=>"
ENTRY = re.compile(rf"\s*{WORD.pattern}(?:\s+{WORD.pattern})*\s*", re.UNICODE)


@dataclass(frozen=True)
class SynonymRule:
    """One line of the file: the entries it matches, the words it adds, and whether the
    matched words stay (a line of equivalent entries) or are replaced (``=>``)."""

    line: int
    matches: tuple[tuple[str, ...], ...]
    adds: tuple[str, ...]
    keep: bool


@dataclass(frozen=True)
class Synonyms:
    """The rules of a synonyms file and the text they were read from ('' for none)."""

    rules: tuple[SynonymRule, ...] = ()
    text: str = ""

    def digest(self) -> str:
        """Return the SHA-256 of the file's text (of '' when there is no file)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def for_language(self, language: str) -> SynonymMap:
        """Return the rules keyed by the stems of a language; rules on one key merge."""
        merged: dict[tuple[str, ...], Rewrite] = {}
        for rule in self.rules:
            for entry in rule.matches:
                key = tuple(stem(word, language) for word in entry)
                before = merged.get(key, Rewrite((), False))
                merged[key] = Rewrite(tuple(dict.fromkeys((*before.words, *rule.adds))),
                                      before.keep or rule.keep)
        return SynonymMap(tuple(merged.items()))


NO_RULES = Synonyms()


def _entry(path: Path | str, number: int, raw: str) -> tuple[str, ...]:
    """Return the folded words of one entry; raise SynonymsError if it is no words."""
    text = raw.strip()
    if not text:
        raise SynonymsError(path, "an empty entry (two commas, or a comma at an end)", number)
    if not ENTRY.fullmatch(text):
        raise SynonymsError(
            path, f"entry {text!r} must be words separated by spaces (no punctuation)", number
        )
    found = tuple(words(match.group())[0] for match in WORD.finditer(text))
    if all(any(word in stopwords(lang) for lang in LANGUAGES) for word in found):
        raise SynonymsError(path, f"entry {text!r} has only stop words, which are never "
                            "searched", number)
    return found


def _entries(path: Path | str, number: int, side: str) -> tuple[tuple[str, ...], ...]:
    """Return the entries of one side of a rule (comma-separated)."""
    return tuple(_entry(path, number, raw) for raw in side.split(","))


def _one_words(path: Path | str, number: int, entries: tuple[tuple[str, ...], ...],
               what: str) -> tuple[str, ...]:
    """Return the one-word entries; raise when ``what`` demands them and there are none."""
    single = tuple(dict.fromkeys(entry[0] for entry in entries if len(entry) == 1))
    if what == "right" and len(single) < len(entries):
        several = next(" ".join(e) for e in entries if len(e) > 1)
        raise SynonymsError(path, f"{several!r} on the right of '=>': a rule can only put "
                            "single words in place of what it matches", number)
    if not single:
        raise SynonymsError(path, "a line of equivalent entries needs at least one "
                            "single word to put beside the others", number)
    return single


def parse_rule(path: Path | str, number: int, line: str) -> SynonymRule | None:
    """Parse one line of a synonyms file (None for blank and comment lines)."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.count(ARROW) > 1:
        raise SynonymsError(path, f"more than one {ARROW!r} on the line", number)
    if ARROW in text:
        left, right = text.split(ARROW)
        if not left.strip() or not right.strip():
            raise SynonymsError(path, f"entries are needed on both sides of {ARROW!r}", number)
        matches = _entries(path, number, left)
        adds = _one_words(path, number, _entries(path, number, right), "right")
        return SynonymRule(number, matches, adds, keep=False)
    matches = _entries(path, number, text)
    if len(matches) < 2:
        raise SynonymsError(path, "a rule needs two or more entries separated by commas, "
                            f"or {ARROW!r} and what to put in their place", number)
    return SynonymRule(number, matches, _one_words(path, number, matches, "equal"), keep=True)


def parse_synonyms(text: str, path: Path | str = SYNONYMS_FILE) -> Synonyms:
    """Parse a synonyms file's text; raise SynonymsError naming the file and line."""
    rules = []
    for number, line in enumerate(text.split("\n"), start=1):
        rule = parse_rule(path, number, line)
        if rule is not None:
            rules.append(rule)
    return Synonyms(tuple(rules), text)


def load_synonyms(path: Path, shown: Path | str | None = None) -> Synonyms:
    """Read and parse a synonyms file; a missing file means no synonyms.

    ``shown`` is how errors name the file (by default its path). Raises SynonymsError.
    """
    shown = shown if shown is not None else path
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return NO_RULES
    except OSError as exc:
        raise SynonymsError(shown, f"cannot be read: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SynonymsError(shown, "not valid UTF-8; save the file as UTF-8", line) from None
    return parse_synonyms(text.removeprefix("\ufeff").replace("\r\n", "\n"), shown)
