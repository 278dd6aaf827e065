"""Article skeletons for content gaps: ``kbsearch gaps draft GROUP``.

A draft carries what the gap group knows: an id made from its most common query, the
query as a provisional title, the group's language, the category of the article that came
closest, ``status: draft``, a review date half a year ahead, the example queries as
``questions:``, and headings for the editor to fill, below a comment that names the
closest article (perhaps that one should be extended instead). It is written next to the
closest article, or into a folder given, and never over an existing file.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from kbsearch.content.analysis import stopwords, words
from kbsearch.content.articles import SLUG, Article
from kbsearch.errors import ReportError
from kbsearch.learning.gaps import GapGroup, utc_day

REVIEW_DAYS = 182
SLUG_WORDS = 6
DEFAULT_CATEGORY = "allgemein"
BODY = {
    "de": ("Kurz gesagt: …", "So geht's", "1. …", "Gut zu wissen", "- …",
           "Wenn es nicht klappt", "…"),
    "en": ("In short: …", "How to do it", "1. …", "Good to know", "- …",
           "If it does not work", "…"),
}
NOTE = {
    "de": ("Entwurf aus Inhaltslücke #{number} (kbsearch gaps): {searches} Suchen von "
           "{clients} Kunden, {first} bis {last}.",
           "Am nächsten kam: {closest} (zuerst gezeigt in {top} Suchen, mittlere "
           "Wahrscheinlichkeit {probability:.2f}). Prüfen Sie, ob dieser Artikel ergänzt "
           "werden sollte, statt einen neuen zu schreiben.",
           "Kein Artikel kam nahe."),
    "en": ("Draft from content gap #{number} (kbsearch gaps): {searches} searches by "
           "{clients} clients, {first} to {last}.",
           "Closest so far: {closest} (ranked first in {top} searches, mean probability "
           "{probability:.2f}). Check whether that article should be extended instead.",
           "No article came close."),
}


@dataclass(frozen=True)
class Draft:
    """An article skeleton: its id, the file it goes to, and its text."""

    article_id: str
    path: Path
    text: str


def slug_for(query: str, language: str, number: int) -> str:
    """Return an article id from a query: its content words, folded, joined by '-'."""
    language = language if language in BODY else "de"
    stop = stopwords(language)
    kept = [w for w in words(query) if w not in stop and re.fullmatch(r"[a-z0-9]+", w)]
    slug = "-".join(dict.fromkeys(kept[:SLUG_WORDS]))[:80].strip("-")
    if not SLUG.match(slug):
        return f"{'inhaltsluecke' if language == 'de' else 'content-gap'}-{number}"
    return slug


def _title(query: str) -> str:
    """Return a query as a provisional title: first letter upper case."""
    query = " ".join(query.split())
    return query[:1].upper() + query[1:]


def draft_text(group: GapGroup, slug: str, closest: Article | None, today: dt.date) -> str:
    """Return the Markdown of a draft article for a gap group."""
    language = group.language if group.language in BODY else "de"
    title = _title(group.examples[0]) if group.examples else slug
    meta = {
        "id": slug, "title": title, "language": language,
        "category": closest.category if closest is not None else DEFAULT_CATEGORY,
        "status": "draft", "tags": [], "review_by": today + dt.timedelta(days=REVIEW_DAYS),
        "questions": list(group.examples),
    }
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    intro, closest_note, no_closest = NOTE[language]
    lines = [intro.format(number=group.number, searches=group.searches,
                          clients=group.clients, first=utc_day(group.first_seen),
                          last=utc_day(group.last_seen))]
    if group.closest is not None:
        named = group.closest.article_id + (f" „{closest.title}“" if closest else "")
        lines.append(closest_note.format(closest=named, top=group.closest.top_searches,
                                         probability=group.closest.mean_probability))
    else:
        lines.append(no_closest)
    comment = "<!--\n" + "\n".join(lines).replace("--", "–") + "\n-->"
    short, how, step, know, item, fails, rest = BODY[language]
    body = (f"{comment}\n# {title}\n\n{short}\n\n## {how}\n{step}\n\n## {know}\n{item}\n\n"
            f"## {fails}\n{rest}\n")
    return f"---\n{front}---\n{body}"


def make_draft(group: GapGroup, articles: Sequence[Article], articles_dir: Path,
               out: Path | None, today: dt.date) -> Draft:
    """Return the draft of a gap group and where it goes; raise ReportError if it cannot.

    Without ``out`` it goes next to the closest article (else to the articles folder). The
    file must not exist and the id must not be another article's.
    """
    by_id = {a.id: a for a in articles}
    closest = by_id.get(group.closest.article_id) if group.closest else None
    slug = slug_for(group.examples[0] if group.examples else "", group.language, group.number)
    if slug in by_id:
        raise ReportError(f"gap {group.number}: id {slug!r} is already used by "
                          f"{articles_dir / by_id[slug].path}; extend that article, or "
                          "write the draft with --out elsewhere and give it another id")
    if out is not None:
        folder = out
    elif closest is not None and closest.path:
        folder = articles_dir / Path(closest.path).parent
    else:
        folder = articles_dir
    path = folder / f"{slug}.md"
    return Draft(slug, path, draft_text(group, slug, closest, today))


def write_draft(draft: Draft) -> Path:
    """Write a draft to its file, never over an existing one; raise ReportError if it cannot."""
    try:
        draft.path.parent.mkdir(parents=True, exist_ok=True)
        with draft.path.open("x", encoding="utf-8") as handle:
            handle.write(draft.text)
    except FileExistsError:
        raise ReportError(f"{draft.path} already exists; it was not overwritten (move it, "
                          "or write the draft elsewhere with --out DIR)") from None
    except OSError as exc:
        raise ReportError(f"cannot write the draft {draft.path}: {exc}") from None
    return draft.path
