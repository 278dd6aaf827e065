"""Pure helpers that turn search results and articles into what the FAQ pages show."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

from markupsafe import Markup, escape

from kbsearch.content.analysis import fold
from kbsearch.content.articles import Article, family
from kbsearch.content.snippets import match_prefixes

WORD = re.compile(r"\w+")
MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December")
# Lower bounds of the probability words, best first (key in kbsearch.http.web.texts).
PROBABILITY_LEVELS: tuple[tuple[float, str], ...] = (
    (0.8, "prob_very_likely"),
    (0.5, "prob_likely"),
    (0.25, "prob_maybe"),
    (0.0, "prob_unlikely"),
)


def highlight(text: str, query: str) -> Markup:
    """Return text as safe HTML with the words that match a query term inside ``<mark>``.

    A word matches when its folded form (ä→ae, ß→ss, lower case) starts with the beginning
    of a folded query term. Everything else is escaped, piece by piece.
    """
    prefixes = match_prefixes(query)
    if not prefixes:
        return escape(text)
    pieces: list[Markup] = []
    last = 0
    for match in WORD.finditer(text):
        folded = fold(match.group())
        if any(folded.startswith(prefix) for prefix in prefixes):
            pieces.append(escape(text[last : match.start()]))
            pieces.append(Markup("<mark>{}</mark>").format(match.group()))
            last = match.end()
    pieces.append(escape(text[last:]))
    return Markup("").join(pieces)


def probability_level(probability: float) -> str:
    """Return the text key that says a solution probability in plain words."""
    for floor, key in PROBABILITY_LEVELS:
        if probability >= floor:
            return key
    return PROBABILITY_LEVELS[-1][1]


def best_probability(probabilities: Iterable[float]) -> float:
    """Return the highest probability, 0 when there is none."""
    return max(probabilities, default=0.0)


def human_first(probabilities: Sequence[float], threshold: float) -> bool:
    """Return whether the way to a human goes above the results: none, or none likely enough."""
    return not probabilities or best_probability(probabilities) < threshold


def for_language(articles: Iterable[Article], language: str) -> list[Article]:
    """Keep one article per translation family: the one in ``language``, else the original.

    The result is ordered by category, then title.
    """
    families: dict[str, list[Article]] = {}
    for article in articles:
        families.setdefault(family(article), []).append(article)
    chosen = []
    for members in families.values():
        preferred = [a for a in members if a.language == language]
        originals = [a for a in members if a.translation_of is None]
        chosen.append((preferred or originals or members)[0])
    return sorted(chosen, key=lambda a: (a.category, a.title.lower()))


def translations(article: Article, articles: Iterable[Article]) -> list[Article]:
    """Return the other articles of the same translation family."""
    key = family(article)
    return [a for a in articles if family(a) == key and a.id != article.id]


def tel_href(phone: str) -> str:
    """Return the ``tel:`` address of a phone number as people write it."""
    digits = "".join(char for char in phone if char.isdigit())
    return "tel:" + ("+" if phone.strip().startswith("+") else "") + digits


def format_date(date: dt.date, language: str) -> str:
    """Return a date as people write it: 14.09.2026 in German, 14 September 2026 in English."""
    if language == "en":
        return f"{date.day} {MONTHS_EN[date.month - 1]} {date.year}"
    return date.strftime("%d.%m.%Y")
