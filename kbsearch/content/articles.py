"""Parse and validate Markdown articles with YAML front matter."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import frontmatter
import yaml

from kbsearch.content.markdown import plain
from kbsearch.errors import ArticleError, ArticlesNotFoundError

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,118}[a-z0-9])?$")
Audience = Literal["public", "internal"]
ArticleStatus = Literal["draft", "published", "archived"]
AUDIENCES: tuple[str, ...] = get_args(Audience)
STATUSES: tuple[str, ...] = get_args(ArticleStatus)
REQUIRED = ("id", "title", "language", "category")
KNOWN_FIELDS = frozenset(
    REQUIRED
    + ("tags", "audience", "status", "updated", "review_by", "translation_of", "related",
       "questions")
)
MAX_TITLE_CHARS = 300
MAX_QUESTIONS = 30
MAX_QUESTION_CHARS = 300


@dataclass(frozen=True)
class Article:
    """One validated solution article."""

    id: str
    title: str
    language: str
    category: str
    body: str
    tags: tuple[str, ...] = ()
    audience: str = "public"
    status: str = "published"
    updated: dt.date | None = None
    review_by: dt.date | None = None
    translation_of: str | None = None
    related: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    path: str = ""
    content_hash: str = ""

    def to_metadata(self) -> dict[str, Any]:
        """Return the article's front matter as JSON-ready values."""
        return {
            "id": self.id,
            "title": self.title,
            "language": self.language,
            "category": self.category,
            "tags": list(self.tags),
            "audience": self.audience,
            "status": self.status,
            "updated": self.updated.isoformat() if self.updated else None,
            "review_by": self.review_by.isoformat() if self.review_by else None,
            "translation_of": self.translation_of,
            "related": list(self.related),
            "questions": list(self.questions),
            "path": self.path,
            "content_hash": self.content_hash,
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], body: str) -> Article:
        """Rebuild an article from :meth:`to_metadata` output and its body."""
        return cls(
            id=meta["id"],
            title=meta["title"],
            language=meta["language"],
            category=meta["category"],
            body=body,
            tags=tuple(meta["tags"]),
            audience=meta["audience"],
            status=meta["status"],
            updated=_iso_or_none(meta["updated"]),
            review_by=_iso_or_none(meta["review_by"]),
            translation_of=meta["translation_of"],
            related=tuple(meta["related"]),
            questions=tuple(meta["questions"]),
            path=meta["path"],
            content_hash=meta["content_hash"],
        )


@dataclass(frozen=True)
class LoadResult:
    """Articles that passed validation, and one error per file that did not."""

    articles: tuple[Article, ...]
    errors: tuple[ArticleError, ...] = field(default=())


def _iso_or_none(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def _field_line(lines: Sequence[str], name: str) -> int | None:
    """Return the 1-based file line of a front matter key (the file's line 1 is '---')."""
    pattern = re.compile(rf"^{re.escape(name)}\s*:")
    for number, line in enumerate(lines, start=2):
        if pattern.match(line):
            return number
    return None


def _is_date(value: str) -> bool:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _decode(path: Path, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ArticleError(
            path, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8", line
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def _as_date(path: Path, lines: Sequence[str], name: str, value: Any) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ArticleError(
            path, f"{value!r} is not a date (YYYY-MM-DD)", _field_line(lines, name), name
        ) from None


def _as_list(path: Path, lines: Sequence[str], name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part for part in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ArticleError(
            path, "must be a list of words, e.g. [zähler, strom]", _field_line(lines, name), name
        )
    return tuple(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))


def _refuse_markup(path: Path, lines: Sequence[str], name: str, values: Sequence[str]) -> None:
    """Raise ArticleError when a front matter text holds HTML markup (tags or entities).

    Titles, categories, tags and questions are plain text wherever they are shown: the API
    hands them to programs that may put them into a page as they are.
    """
    for number, value in enumerate(values, start=1):
        if plain(value) != value:
            at = _field_line(lines, name)
            line = _item_line(lines, at, number) if name == "questions" else at
            raise ArticleError(path, f"holds HTML markup ({value!r}); a {name.rstrip('s')} "
                               "is plain text", line, name)


def _item_line(lines: Sequence[str], at: int | None, number: int) -> int | None:
    """Return the file line of a block list's item (``- text`` lines under the field)."""
    if at is None:
        return None
    items = [i for i, line in enumerate(lines[at - 1 :], start=at + 1)
             if line.lstrip().startswith("- ")]
    block = items == list(range(at + 1, at + 1 + len(items)))
    return items[number - 1] if block and number <= len(items) else at


def _as_questions(path: Path, lines: Sequence[str], value: Any) -> tuple[str, ...]:
    """Return the editors' questions of an article: a list of short texts, each once."""
    if value is None:
        return ()
    at = _field_line(lines, "questions")
    if not isinstance(value, list):
        raise ArticleError(
            path, 'must be a list of questions, e.g. ["Ich ziehe um", "Neue Adresse melden"]',
            at, "questions",
        )
    if len(value) > MAX_QUESTIONS:
        raise ArticleError(path, f"{len(value)} questions; at most {MAX_QUESTIONS} are "
                           "allowed", at, "questions")
    questions: list[str] = []
    for number, item in enumerate(value, start=1):
        line = _item_line(lines, at, number)
        if not isinstance(item, str):
            raise ArticleError(path, f"question {number} is not text: {item!r} (put it in "
                               "quotes)", line, "questions")
        text = " ".join(item.split())
        if not text:
            raise ArticleError(path, f"question {number} is empty", line, "questions")
        if len(text) > MAX_QUESTION_CHARS:
            raise ArticleError(path, f"question {number} is longer than {MAX_QUESTION_CHARS} "
                               "characters", line, "questions")
        questions.append(text)
    return tuple(dict.fromkeys(questions))


def _front_matter(shown: Path, text: str) -> tuple[dict[str, Any], list[str], str]:
    """Return an article's front matter, its lines and the body; raise ArticleError."""
    if not text.startswith("---\n"):
        raise ArticleError(shown, "no front matter: the file must start with a '---' line", 1)
    end = text.find("\n---", 3)
    if end < 0:
        raise ArticleError(shown, "front matter is not closed by a '---' line", 1)
    lines = text[4:end].split("\n")
    try:
        post = frontmatter.loads(text)
    except ValueError as exc:  # YAML read an impossible date such as 2026-13-45
        for number, line in enumerate(lines, start=2):
            match = re.match(r"^([\w-]+)\s*:\s*['\"]?(\d{4}-\d{1,2}-\d{1,2})['\"]?\s*$", line)
            if match and not _is_date(match.group(2)):
                raise ArticleError(
                    shown, f"{match.group(2)!r} is not a date (YYYY-MM-DD)", number,
                    match.group(1),
                ) from None
        raise ArticleError(shown, f"front matter has an invalid value: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = mark.line + 2 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ArticleError(shown, f"front matter is not valid YAML: {problem}", at) from None
    meta: dict[str, Any] = dict(post.metadata)
    for name in meta:
        if name not in KNOWN_FIELDS:
            raise ArticleError(
                shown,
                f"unknown field (known: {', '.join(sorted(KNOWN_FIELDS))})",
                _field_line(lines, str(name)),
                str(name),
            )
    for name in REQUIRED:
        value = meta.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ArticleError(shown, "is required", _field_line(lines, name), name)
        if not isinstance(value, str):
            raise ArticleError(shown, "must be text", _field_line(lines, name), name)
    return meta, lines, post.content


def parse_article(
    path: Path | str,
    raw: bytes,
    languages: Sequence[str] = ("de", "en"),
    relative_to: Path | None = None,
) -> Article:
    """Parse one article file's bytes; raise ArticleError naming file, line and field."""
    path = Path(path)
    shown = path.relative_to(relative_to) if relative_to else path
    meta, lines, content = _front_matter(shown, _decode(shown, raw))
    article_id = meta["id"].strip()
    if not SLUG.match(article_id):
        raise ArticleError(
            shown,
            f"{article_id!r} is not a slug (lowercase a-z, 0-9 and '-', e.g. zaehlerstand-melden)",
            _field_line(lines, "id"),
            "id",
        )
    title = " ".join(meta["title"].split())
    if len(title) > MAX_TITLE_CHARS:
        raise ArticleError(
            shown, f"longer than {MAX_TITLE_CHARS} characters", _field_line(lines, "title"), "title"
        )
    _refuse_markup(shown, lines, "title", [title])
    language = meta["language"].strip().lower()
    if language not in languages:
        raise ArticleError(
            shown,
            f"{language!r} is not one of {', '.join(languages)}",
            _field_line(lines, "language"),
            "language",
        )
    choices = {"audience": AUDIENCES, "status": STATUSES}
    checked: dict[str, str] = {}
    for name, allowed in choices.items():
        value = str(meta.get(name, allowed[0] if name == "audience" else "published"))
        if value not in allowed:
            raise ArticleError(
                shown,
                f"{value!r} is not one of {', '.join(allowed)}",
                _field_line(lines, name),
                name,
            )
        checked[name] = value
    translation_of = meta.get("translation_of")
    if translation_of is not None and not SLUG.match(str(translation_of)):
        raise ArticleError(
            shown, "must be the id of another article", _field_line(lines, "translation_of"),
            "translation_of",
        )
    related = _as_list(shown, lines, "related", meta.get("related"))
    for other in related:
        if not SLUG.match(other):
            raise ArticleError(
                shown, f"{other!r} is not an article id", _field_line(lines, "related"), "related"
            )
    body = content.strip()
    if not body:
        raise ArticleError(shown, "the article has no text after the front matter", len(lines) + 2)
    category = meta["category"].strip()
    tags = tuple(tag.lower() for tag in _as_list(shown, lines, "tags", meta.get("tags")))
    questions = _as_questions(shown, lines, meta.get("questions"))
    for name, values in (("category", [category]), ("tags", tags), ("questions", questions)):
        _refuse_markup(shown, lines, name, values)

    return Article(
        id=article_id,
        title=title,
        language=language,
        category=category,
        body=body,
        tags=tags,
        audience=checked["audience"],
        status=checked["status"],
        updated=_as_date(shown, lines, "updated", meta.get("updated")),
        review_by=_as_date(shown, lines, "review_by", meta.get("review_by")),
        translation_of=str(translation_of) if translation_of is not None else None,
        related=related,
        questions=questions,
        path=str(shown),
        content_hash=hashlib.sha256(raw).hexdigest(),
    )


def article_files(folder: Path) -> list[Path]:
    """Return the Markdown files below a folder, sorted; raise if the folder is missing."""
    if not folder.exists():
        raise ArticlesNotFoundError(f"articles folder {folder} does not exist")
    if not folder.is_dir():
        raise ArticlesNotFoundError(f"articles folder {folder} is not a folder")
    # sorted by parts, the order of Path comparisons (a/x.md before a-b/x.md), without them
    return sorted(_markdown_files(folder), key=lambda p: p.parts)


def _markdown_files(folder: Path) -> Iterator[Path]:
    """Yield every ``*.md`` file below a folder as ``rglob`` finds them: symbolic links
    to files included, linked folders not entered, unreadable folders skipped.

    One ``scandir`` per folder; ``rglob`` and ``is_file`` took a sixth of a reindex.
    """
    try:
        entries = list(os.scandir(folder))
    except PermissionError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _markdown_files(folder / entry.name)
        elif entry.name.endswith(".md") and entry.is_file():
            yield folder / entry.name


def load_articles(
    folder: Path, languages: Sequence[str] = ("de", "en"),
    parsed: Mapping[tuple[str, str], Article] | None = None,
) -> LoadResult:
    """Parse every article below a folder; collect one error per bad file, skip duplicates.

    ``parsed`` holds articles parsed before (an index build's), by path relative to the
    folder and content hash: a file with the same path and bytes, in a language still
    configured, is taken from it instead of being parsed again (parsing depends on
    nothing else).
    """
    articles: list[Article] = []
    errors: list[ArticleError] = []
    seen: dict[str, Article] = {}
    depth = len(folder.parts)
    for path in article_files(folder):
        try:
            raw = path.read_bytes()
            known = parsed.get(
                ("/".join(path.parts[depth:]), hashlib.sha256(raw).hexdigest())
            ) if parsed else None
            if known is not None and known.language in languages:
                article = known
            else:
                article = parse_article(path, raw, languages, relative_to=folder)
        except ArticleError as exc:
            errors.append(exc)
            continue
        except OSError as exc:
            errors.append(ArticleError(path.relative_to(folder), f"cannot be read: {exc}"))
            continue
        first = seen.get(article.id)
        if first is not None:
            text = path.read_text("utf-8", errors="replace").split("\n")[1:]
            errors.append(
                ArticleError(
                    article.path,
                    f"duplicate id {article.id!r}, already used by {first.path}",
                    _field_line(text, "id"),
                    "id",
                )
            )
            continue
        seen[article.id] = article
        articles.append(article)
    return LoadResult(tuple(articles), tuple(errors))


def article_url(article_id: str) -> str:
    """Return the FAQ page address of an article."""
    return f"/articles/{article_id}"


def family(article: Article) -> str:
    """Return the id that an article and its translations share (the original's id)."""
    return article.translation_of or article.id
