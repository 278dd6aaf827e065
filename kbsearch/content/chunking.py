"""Split Markdown articles into sections and chunks that fit the embedding model."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^(```|~~~)")


@dataclass(frozen=True)
class Section:
    """A heading and the Markdown text below it (up to the next heading)."""

    heading: str
    text: str


@dataclass(frozen=True)
class Chunk:
    """The unit the dense index embeds: one section, or part of a long one."""

    article_id: str
    ordinal: int
    heading: str
    text: str


# Markdown syntax that plain_text removes: (pattern, replacement, a string the text must
# contain for the pattern to match). The patterns run in this order; one whose string is
# absent is skipped (most articles have no table, image or HTML: a third of the time).
_PLAIN: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1", "]("),
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1", "]("),
    (re.compile(r"<[^>]+>"), " ", "<"),
    (re.compile(r"(\*\*|__|\*|`)"), "", ""),
    (re.compile(r"^\s*\|?\s*:?-{3,}.*$", re.M), "", "---"),
    (re.compile(r"\s*\|\s*"), " | ", "|"),
    (re.compile(r"^\s{0,3}(#{1,6}|>|[-*+]|\d+[.)])\s+", re.M), "", ""),
    # runs of blanks to one space: a lone space stays as it is, so it need not match
    (re.compile(r"(?: [ \t]|\t)[ \t]*"), " ", ""),
    (re.compile(r"\n{3,}"), "\n\n", "\n\n\n"),
)


def plain_text(markdown: str) -> str:
    """Strip Markdown syntax that only adds noise for search (links, emphasis, tables)."""
    text = markdown
    for pattern, replacement, needed in _PLAIN:
        if needed in text:
            text = pattern.sub(replacement, text)
    return text.strip()


def split_sections(markdown: str) -> list[Section]:
    """Split a Markdown body at its headings; text before the first heading is one section."""
    sections: list[Section] = []
    heading = ""
    lines: list[str] = []
    in_fence = False
    for line in markdown.split("\n"):
        if FENCE.match(line.strip()):
            in_fence = not in_fence
        match = None if in_fence else HEADING.match(line)
        if match:
            if "".join(lines).strip() or (heading and not sections):
                sections.append(Section(heading, "\n".join(lines).strip()))
            heading = match.group(2).strip()
            lines = []
        else:
            lines.append(line)
    if "".join(lines).strip() or heading:
        sections.append(Section(heading, "\n".join(lines).strip()))
    return [s for s in sections if s.text or s.heading]


def _split_long(text: str, count: Callable[[str], int], budget: int) -> list[str]:
    """Split text at paragraph, then sentence, then word boundaries into pieces under budget."""
    if count(text) <= budget:
        return [text]
    for separator in ("\n\n", "\n", r"(?<=[.!?])\s+", " "):
        parts = [p for p in re.split(separator, text) if p.strip()]
        if len(parts) > 1:
            break
    else:
        return [text]  # one unbreakable word: the model truncates it
    pieces: list[str] = []
    current = ""
    for part in parts:
        candidate = f"{current} {part}".strip() if current else part
        if count(candidate) <= budget:
            current = candidate
            continue
        if current:
            pieces.append(current)
        if count(part) > budget:
            pieces.extend(_split_long(part, count, budget))
            current = ""
        else:
            current = part
    if current:
        pieces.append(current)
    return pieces


def chunk_article(
    article_id: str,
    title: str,
    body: str,
    count_tokens: Callable[[str], int],
    max_tokens: int,
) -> list[Chunk]:
    """Cut an article into chunks of at most ``max_tokens``, each led by title and heading.

    Short neighbouring sections are merged so that a chunk carries enough context.
    """
    chunks: list[Chunk] = []
    pending_heading = ""
    pending = ""
    lead = f"{title}\n" if title else ""
    for section in split_sections(body):
        text = plain_text(section.text)
        heading = plain_text(section.heading)
        if heading == title and not text:
            continue
        block = f"{heading}\n{text}".strip() if heading and heading != title else text
        merged = f"{pending}\n\n{block}".strip() if pending else block
        if pending and count_tokens(lead + merged) <= max_tokens:
            pending = merged
            continue
        if pending:
            chunks.append(Chunk(article_id, len(chunks), pending_heading, lead + pending))
        pending_heading, pending = heading, block
        if count_tokens(lead + pending) > max_tokens:
            budget = max(16, max_tokens - count_tokens(lead) - count_tokens(heading) - 2)
            pieces = _split_long(text, count_tokens, budget)
            for piece in pieces[:-1]:
                head = f"{heading}\n" if heading else ""
                chunks.append(Chunk(article_id, len(chunks), heading, f"{lead}{head}{piece}"))
            pending = f"{heading}\n{pieces[-1]}".strip() if heading else pieces[-1]
    if pending or not chunks:
        text = f"{lead}{pending}".strip() or title
        chunks.append(Chunk(article_id, len(chunks), pending_heading, text))
    return chunks


def word_count(text: str) -> int:
    """Count tokens roughly as words times 1.4 (German words often make two subwords)."""
    return int(len(text.split()) * 1.4) + 1
