"""The editors' content checks as pure functions over articles: each returns findings.

``kbsearch check`` (:func:`kbsearch.learning.checks.run_checks`) runs them all; the
operators' report and the dashboard call them one by one. Lines are filled in from
:class:`SourceLines` when the caller read the files (:func:`source_lines`), else left out.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from kbsearch.content.articles import Article
from kbsearch.content.chunking import FENCE, HEADING, plain_text
from kbsearch.errors import ArticleError
from kbsearch.learning.duplicates import NearDuplicate
from kbsearch.stores.feedback import FeedbackEvent, SearchLog

Severity = Literal["error", "warning"]
# A reached article: shown this high in a logged search, or given any feedback but "impression".
REACHED_TOP = 3
MARKDOWN_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
# the bundled articles' own way to point to another one: "siehe Artikel `abschlag-anpassen`"
ID_MENTION = re.compile(r"\b(?:Artikel|[Aa]rticle)\s+`([a-z0-9-]+)`")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True)
class Finding:
    """One problem of one article file: what, where, and what to do about it.

    ``path`` is relative to the articles folder; ``line`` is the file's line where known;
    ``detail`` holds the same facts for programs (ids, dates, similarity).
    """

    severity: Severity
    code: str
    path: str
    line: int | None
    article_id: str | None
    message: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def location(self) -> str:
        """Return ``path:line`` (or the path alone) as a linter prints it."""
        return f"{self.path}:{self.line}" if self.line else self.path

    def to_json(self) -> dict[str, Any]:
        """Return the finding as JSON-ready values."""
        return {
            "severity": self.severity, "code": self.code, "path": self.path,
            "line": self.line, "article_id": self.article_id, "message": self.message,
            "detail": dict(self.detail),
        }


@dataclass(frozen=True)
class SourceLines:
    """Where things are in an article's file: front matter fields, the body, headings."""

    fields: Mapping[str, int] = field(default_factory=dict)
    body_start: int | None = None
    headings: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StaleArticle:
    """A published article past its ``review_by`` date (days_overdue > 0) or without one."""

    article: Article
    review_by: dt.date | None
    days_overdue: int | None


Lines = Mapping[str, SourceLines]


def source_lines(text: str, body: str) -> SourceLines:
    """Return the file lines of an article's front matter fields, body and headings."""
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    fields: dict[str, int] = {}
    end = 0
    for number, line in enumerate(lines[1:], start=2):
        if line.rstrip() == "---":
            end = number
            break
        match = re.match(r"^([\w-]+)\s*:", line)
        if match and match.group(1) not in fields:
            fields[match.group(1)] = number
    start = text.find(body) if body else -1
    body_start = text[:start].count("\n") + 1 if start >= 0 else None
    headings: dict[str, int] = {}
    in_fence = False
    for number, line in enumerate(lines[end:], start=end + 1):
        in_fence = in_fence != bool(FENCE.match(line.strip()))
        match = None if in_fence else HEADING.match(line)
        if match:
            headings.setdefault(plain_text(match.group(2).strip()), number)
    return SourceLines(fields, body_start, headings)


def field_line(lines: Lines | None, article_id: str, name: str) -> int | None:
    """Return the file line of an article's front matter field, when known."""
    source = lines.get(article_id) if lines else None
    return source.fields.get(name) if source else None


def _body_line(lines: Lines | None, article_id: str, body_line: int) -> int | None:
    """Return the file line of a 1-based line of an article's body, when known."""
    source = lines.get(article_id) if lines else None
    if source is None or source.body_start is None:
        return None
    return source.body_start + body_line - 1


def _warning(article: Article, code: str, line: int | None, message: str,
             **detail: Any) -> Finding:
    """Return a warning about an article."""
    return Finding("warning", code, article.path, line, article.id, message, detail)


def invalid_articles(errors: Iterable[ArticleError]) -> list[Finding]:
    """Return one error per article file that failed validation (as ``kbsearch index`` would)."""
    return [
        Finding("error", "invalid_article", str(error.path), error.line, None,
                (f"field '{error.field}': " if error.field else "") + error.reason,
                {"field": error.field} if error.field else {})
        for error in errors
    ]


def stale_articles(articles: Iterable[Article], today: dt.date) -> list[StaleArticle]:
    """Return the published articles past their review_by date or without one.

    Sorted most overdue first; articles without a review_by date come after all overdue
    ones (their lateness is unknown); ties in path order. An article due today is not late.
    """
    stale = [
        StaleArticle(a, a.review_by, (today - a.review_by).days if a.review_by else None)
        for a in articles
        if a.status == "published" and (a.review_by is None or a.review_by < today)
    ]
    return sorted(stale, key=lambda s: (s.days_overdue is None, -(s.days_overdue or 0),
                                        s.article.path))


def review_findings(
    stale: Iterable[StaleArticle], lines: Lines | None = None
) -> list[Finding]:
    """Return a review_overdue or review_missing warning per stale article."""
    findings = []
    for item in stale:
        article = item.article
        if item.review_by is None:
            findings.append(_warning(
                article, "review_missing", None,
                "no review_by date: set one (review_by: YYYY-MM-DD) so that the article "
                "is looked at again", review_by=None))
            continue
        findings.append(_warning(
            article, "review_overdue", field_line(lines, article.id, "review_by"),
            f"review was due on {item.review_by.isoformat()} ({item.days_overdue} days ago): "
            "check the article and set a new review_by",
            review_by=item.review_by.isoformat(), days_overdue=item.days_overdue))
    return findings


def _body_links(body: str) -> list[tuple[int, str, str]]:
    """Return (body line, link target, kind) of every link or id mention outside code blocks."""
    found: list[tuple[int, str, str]] = []
    in_fence = False
    for number, line in enumerate(body.split("\n"), start=1):
        if FENCE.match(line.strip()):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        reference = REFERENCE_LINK.match(line)
        targets = [reference.group(1)] if reference else MARKDOWN_LINK.findall(line)
        found.extend((number, target, "link") for target in targets)
        found.extend((number, mention, "mention") for mention in ID_MENTION.findall(line))
    return found


def _resolve(article: Article, target: str, by_path: Mapping[str, Article]) -> str | None:
    """Return the id or article path a link target names, or None when it is no article link.

    ``/articles/<id>`` names an id; a relative ``other.md`` or ``../x/other.md`` (and
    ``/x/other.md`` from the articles folder) names a file, returned as ``file:<path>``.
    """
    if SCHEME.match(target) or target.startswith("#"):
        return None
    address = target.split("#", 1)[0].split("?", 1)[0]
    if address.startswith("/articles/"):
        return address.removeprefix("/articles/").strip("/").split("/", 1)[0] or None
    if not address.endswith(".md"):
        return None
    folder = "" if address.startswith("/") else posixpath.dirname(article.path)
    parts: list[str] = []
    for part in posixpath.join(folder, address.lstrip("/")).split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    path = "/".join(parts)
    return by_path[path].id if path in by_path else f"file:{path}"


def _link_problem(source: Article, target_id: str, by_id: Mapping[str, Article]) -> str | None:
    """Return why a link from one article to an id is broken, or None when it is fine.

    A published article may link only to published ones, a draft to drafts too; a public
    article never to an internal one (customers cannot open it).
    """
    if target_id.startswith("file:"):
        return f"there is no article file {target_id.removeprefix('file:')}"
    target = by_id.get(target_id)
    if target is None:
        return f"there is no article with id '{target_id}'"
    allowed = ("published",) if source.status == "published" else ("published", "draft")
    if target.status not in allowed:
        return f"'{target_id}' is {target.status} ({target.path}); readers cannot open it"
    if source.audience == "public" and target.audience == "internal":
        return f"'{target_id}' is internal ({target.path}); customers cannot open it"
    return None


def broken_links(articles: Sequence[Article], lines: Lines | None = None) -> list[Finding]:
    """Return a warning per link or ``related:`` id that leads nowhere a reader can go.

    Links are Markdown links to ``/articles/<id>`` or to another article's ``.md`` file,
    and mentions such as "Artikel `abschlag-anpassen`". Archived articles are not checked;
    ``translation_of`` is checked by :func:`missing_twins`.
    """
    by_id = {a.id: a for a in articles}
    by_path = {a.path.replace("\\", "/"): a for a in articles}
    findings = []
    for article in articles:
        if article.status == "archived":
            continue
        for other in article.related:
            problem = _link_problem(article, other, by_id)
            if problem and other != article.id:
                findings.append(_warning(
                    article, "broken_link", field_line(lines, article.id, "related"),
                    f"related: {problem}; fix or remove the id", target=other,
                    field="related"))
        for body_line, target, kind in _body_links(article.body):
            resolved = target if kind == "mention" else _resolve(article, target, by_path)
            if resolved is None or resolved == article.id:
                continue
            problem = _link_problem(article, resolved, by_id)
            if problem:
                findings.append(_warning(
                    article, "broken_link", _body_line(lines, article.id, body_line),
                    f"link to {target}: {problem}", target=target, kind=kind))
    return findings


def missing_twins(articles: Sequence[Article], lines: Lines | None = None) -> list[Finding]:
    """Return a warning per ``translation_of`` that names no usable original.

    The original must exist, be another article in another language, be published (when
    the translation is), and be an original itself; an original has at most one
    translation per language. An original without translations, or with translations in
    some of the configured languages only, is fine: ``translation_of`` says that an article
    is a translation, not that every article must exist in every language.
    """
    by_id = {a.id: a for a in articles}
    seen: dict[tuple[str, str], Article] = {}
    findings = []
    for article in articles:
        original_id = article.translation_of
        if original_id is None or article.status == "archived":
            continue
        original = by_id.get(original_id)
        problem = None
        if original_id == article.id:
            problem = "names the article itself; name the original it translates"
        elif original is None:
            problem = f"there is no article with id '{original_id}'"
        elif original.translation_of:
            problem = (f"'{original_id}' is itself a translation of "
                       f"'{original.translation_of}'; name the original")
        elif original.language == article.language:
            problem = (f"'{original_id}' is also in '{article.language}'; a translation "
                       "must be in another language")
        elif article.status == "published" and original.status != "published":
            problem = f"the original '{original_id}' is {original.status} ({original.path})"
        elif (original_id, article.language) in seen:
            other = seen[(original_id, article.language)]
            problem = (f"'{original_id}' already has a '{article.language}' translation, "
                       f"{other.path}")
        else:
            seen[(original_id, article.language)] = article
        if problem:
            findings.append(_warning(
                article, "missing_twin", field_line(lines, article.id, "translation_of"),
                f"translation_of: {problem}", original=original_id))
    return findings


def old_drafts(
    articles: Iterable[Article],
    today: dt.date,
    max_days: int,
    modified: Mapping[str, dt.date] | None = None,
    lines: Lines | None = None,
) -> list[Finding]:
    """Return a warning per draft last updated more than ``max_days`` days ago.

    A draft without ``updated`` is dated by ``modified`` (the file's modification date, by
    article id), and the message says so; without either it is left out.
    """
    findings = []
    for article in articles:
        if article.status != "draft":
            continue
        date = article.updated or (modified or {}).get(article.id)
        if date is None or (today - date).days <= max_days:
            continue
        days = (today - date).days
        since = (f"last updated {date.isoformat()}" if article.updated else
                 f"no 'updated' date; its file was last changed on {date.isoformat()}")
        findings.append(_warning(
            article, "old_draft", field_line(lines, article.id, "status"),
            f"draft, {since} ({days} days ago, more than {max_days}): publish it, "
            "archive it or delete it",
            updated=date.isoformat(), days=days,
            dated_by="updated" if article.updated else "file"))
    return findings


def reached_articles(
    searches: Iterable[SearchLog], events: Iterable[FeedbackEvent], top: int = REACHED_TOP
) -> set[str]:
    """Return the ids of articles that a search showed in its top results or got feedback on.

    Any feedback but an impression counts (a click, a vote, resolved, escalated).
    """
    reached = {r.article_id for s in searches for r in s.results if r.position <= top}
    reached.update(e.article_id for e in events if e.event != "impression")
    return reached


def unreached_articles(
    articles: Iterable[Article], judged: Iterable[str], reached: Iterable[str], days: int
) -> list[Finding]:
    """Return a warning per published article that no judged query lists and no search reached.

    ``reached`` comes from :func:`reached_articles` over the last ``days`` days of the log.
    """
    known = set(judged) | set(reached)
    return [
        _warning(article, "unreached", None,
                 f"no judged query lists it and no search of the last {days} days showed "
                 f"it in the top {REACHED_TOP} or gave feedback on it: check that its title "
                 "and tags use the customers' words, or archive it", days=days)
        for article in articles
        if article.status == "published" and article.id not in known
    ]


def unknown_judged_ids(
    judgments: Iterable[Any], articles: Iterable[Article], path: str
) -> list[Finding]:
    """Return a warning per judged query (``Judgment``) that names an article not published."""
    published = {a.id for a in articles if a.status == "published"}
    return [
        Finding("warning", "broken_link", path, judgment.line, None,
                f"judged query {judgment.query!r} names {', '.join(sorted(missing))}, "
                "not a published article; fix or remove the id",
                {"query": judgment.query, "targets": sorted(missing)})
        for judgment in judgments
        if (missing := set(judgment.relevant) - published)
    ]


def duplicate_findings(
    pairs: Iterable[NearDuplicate], lines: Lines | None = None
) -> list[Finding]:
    """Return a warning per near-duplicate pair, on the first article's file."""
    findings = []
    for pair in pairs:
        first, second = pair.first, pair.second
        shown = "; ".join(f"'{o.first_heading or first.title}' ~ "
                          f"'{o.second_heading or second.title}' ({o.similarity:.3f})"
                          for o in pair.overlaps)
        source = lines.get(first.id) if lines else None
        line = source.headings.get(pair.overlaps[0].first_heading) if source else None
        findings.append(_warning(
            first, "near_duplicate", line,
            f"near-duplicate of {second.path} ({second.id}), similarity "
            f"{pair.similarity:.3f}, sections {shown}: merge them, or make each answer "
            "its own question",
            other=second.id, other_path=second.path, similarity=round(pair.similarity, 3),
            sections=[{"first": o.first_heading, "second": o.second_heading,
                       "similarity": round(o.similarity, 3)} for o in pair.overlaps]))
    return findings
