"""The editors' content checks behind ``kbsearch check``: findings with file, line and reason.

Each check is a small pure function over parsed articles (and, for some, vectors or search
data passed in), in :mod:`kbsearch.learning.article_checks` and, for near-duplicates,
:mod:`kbsearch.learning.duplicates`; this module imports the ones that others reuse
(:func:`stale_articles`, :func:`near_duplicates`, ...), so ``from kbsearch.learning.checks
import ...`` finds them all. :func:`run_checks` reads the articles folder, the judged
queries and the feedback log and runs every check.

Only invalid articles (and an unreadable judgments file) are errors; everything else is a
warning, so a content repository's CI fails on what would break indexing and shows the rest.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbsearch.config import Settings
from kbsearch.content.articles import Article, load_articles
from kbsearch.errors import DatasetError, StoreError
from kbsearch.learning.article_checks import (
    Finding,
    Lines,
    SourceLines,
    StaleArticle,
    broken_links,
    duplicate_findings,
    invalid_articles,
    missing_twins,
    old_drafts,
    reached_articles,
    review_findings,
    source_lines,
    stale_articles,
    unknown_judged_ids,
    unreached_articles,
)
from kbsearch.learning.duplicates import (
    EmbedderSource,
    NearDuplicate,
    Sections,
    SectionVectors,
    near_duplicates,
    section_vectors,
)
from kbsearch.learning.evaluation import load_judgments
from kbsearch.stores.feedback import FeedbackStore, SearchLog
from kbsearch.stores.feedback_sqlite import SQLiteFeedbackStore

__all__ = [
    "CheckReport", "Finding", "NearDuplicate", "SectionVectors", "Sections", "SourceLines",
    "StaleArticle", "broken_links", "duplicate_findings", "invalid_articles", "missing_twins",
    "near_duplicates", "old_drafts", "reached_articles", "review_findings", "run_checks",
    "section_vectors", "source_lines", "stale_articles", "unreached_articles",
]


@dataclass(frozen=True)
class CheckReport:
    """Every finding of one run, the number of article files checked, and notes on the run."""

    articles: int
    findings: tuple[Finding, ...]
    notes: tuple[str, ...] = ()

    @property
    def errors(self) -> int:
        """Return the number of errors."""
        return sum(1 for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        """Return the number of warnings."""
        return sum(1 for f in self.findings if f.severity == "warning")

    @property
    def counts(self) -> dict[str, int]:
        """Return the number of findings of each code, by code."""
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.code] = counts.get(finding.code, 0) + 1
        return dict(sorted(counts.items()))

    def to_json(self) -> dict[str, Any]:
        """Return the report as the object ``kbsearch check --json`` prints."""
        return {
            "articles": self.articles, "errors": self.errors, "warnings": self.warnings,
            "counts": self.counts, "findings": [f.to_json() for f in self.findings],
            "notes": list(self.notes),
        }


def _file_lines(folder: Path, articles: Iterable[Article]) -> tuple[Lines, dict[str, dt.date]]:
    """Read each article's file for its field, body and heading lines, and its file date."""
    lines: dict[str, SourceLines] = {}
    modified: dict[str, dt.date] = {}
    for article in articles:
        path = folder / article.path
        try:
            text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")
            stamp = path.stat().st_mtime
        except (OSError, UnicodeDecodeError):
            continue
        lines[article.id] = source_lines(text, article.body)
        modified[article.id] = dt.datetime.fromtimestamp(stamp, dt.UTC).date()
    return lines, modified


def _shown_path(path: Path, folder: Path) -> str:
    """Return a path relative to the articles folder when it lies inside it."""
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path)


def _judged(settings: Settings, articles: Sequence[Article]) -> tuple[set[str], list[Finding]]:
    """Return the article ids the judged queries list, and findings about the judgments file."""
    path = settings.judgments
    shown = _shown_path(path, settings.articles)
    if not path.is_file():
        return set(), []
    try:
        judgments = load_judgments(path)
    except DatasetError as exc:
        message = str(exc).removeprefix(f"{path}:").lstrip(" 0123456789:")
        number = re.match(rf"{re.escape(str(path))}:(\d+):", str(exc))
        return set(), [Finding("error", "invalid_judgments", shown,
                               int(number.group(1)) if number else None, None, message)]
    judged = {i for j in judgments for i in j.relevant}
    return judged, unknown_judged_ids(judgments, articles, shown)


def _reached(
    settings: Settings, store: FeedbackStore | None, today: dt.date
) -> tuple[set[str] | None, str]:
    """Return the ids reached by the searches of the last days (None: skipped) and a note."""
    days = settings.check_unreached_days
    since = dt.datetime.combine(today - dt.timedelta(days=days), dt.time(), dt.UTC).timestamp()
    opened = None
    if store is None:
        if not settings.feedback_db.is_file():
            return None, (f"unreached: skipped, no feedback database at "
                          f"{settings.feedback_db} (a running server logs its searches there)")
        try:
            store = opened = SQLiteFeedbackStore(settings.feedback_db)
        except StoreError as exc:
            return None, f"unreached: skipped, {exc}"
    searches = 0

    def counted(logged: Iterable[SearchLog]) -> Iterator[SearchLog]:
        nonlocal searches
        for search in logged:
            searches += 1
            yield search

    try:
        reached = reached_articles(counted(store.searches(since=since)),
                                   store.events(since=since))
    finally:
        if opened is not None:
            opened.close()
    if not searches:
        return None, f"unreached: skipped, no search logged in the last {days} days"
    return reached, f"unreached: {searches} searches of the last {days} days"


def run_checks(
    settings: Settings,
    embedder: EmbedderSource,
    store: FeedbackStore | None = None,
    today: dt.date | None = None,
) -> CheckReport:
    """Check every article below ``settings.articles`` and return the findings, by file.

    ``embedder`` (or a function that loads it, called only when some article is not in the
    current index build of ``settings.index``) embeds sections for near-duplicates.
    ``store`` is the feedback log (default: ``settings.feedback_db`` if that file exists;
    without it the unreached check is skipped and a note says so). Raises
    ArticlesNotFoundError when the folder is missing, ModelError when the model is needed
    and cannot be loaded.
    """
    today = today or dt.date.today()
    loaded = load_articles(settings.articles, settings.languages)
    articles = loaded.articles
    lines, modified = _file_lines(settings.articles, articles)
    findings = invalid_articles(loaded.errors)
    findings += review_findings(stale_articles(articles, today), lines)
    findings += broken_links(articles, lines)
    findings += missing_twins(articles, lines)
    findings += old_drafts(articles, today, settings.check_draft_days, modified, lines)
    notes = []
    compared = [a for a in articles if a.status != "archived"]
    if len(compared) > 1:
        sections = section_vectors(compared, settings.index, embedder, settings.chunk_tokens)
        pairs = near_duplicates(compared, sections.vectors, settings.check_duplicate_similarity)
        findings += duplicate_findings(pairs, lines)
        notes.append(f"near-duplicates: {sections.source}, similarity at least "
                     f"{settings.check_duplicate_similarity}")
    judged, judgment_findings = _judged(settings, articles)
    findings += judgment_findings
    reached, note = _reached(settings, store, today)
    notes.append(note)
    if reached is not None:
        findings += unreached_articles(articles, judged, reached, settings.check_unreached_days)
    findings.sort(key=lambda f: (f.path, f.line or 0, f.severity != "error", f.code))
    return CheckReport(len(articles) + len(loaded.errors), tuple(findings), tuple(notes))
