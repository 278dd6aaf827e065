"""Article Markdown to safe HTML: Python-Markdown, then nh3 (ammonia) sanitising."""

from __future__ import annotations

import html
import re

import markdown as markdown_lib
import nh3

MARKDOWN_EXTENSIONS = ("tables", "sane_lists", "fenced_code")
LIST_ITEM = re.compile(r" {0,3}(?:[-*+]|\d{1,3}[.)]) +\S")
FENCE = ("```", "~~~")
REMOTE = re.compile(r"(?i)(?:[a-z][a-z0-9+.-]*:)?//")  # http://, https://, //host


def render_markdown(text: str, remote_images: bool = False) -> str:
    """Render article Markdown to HTML and sanitise it (nh3 / ammonia).

    Images from other sites lose their address unless ``remote_images``: a reader's browser
    then asks no other server for anything (which would tell it who reads what).
    """
    html = markdown_lib.markdown(loosen_lists(text), extensions=list(MARKDOWN_EXTENSIONS))
    return nh3.clean(html, link_rel="noopener noreferrer",
                     attribute_filter=None if remote_images else _local_images_only)


def _local_images_only(tag: str, attribute: str, value: str) -> str | None:
    """Drop an image's address when it points to another site (nh3 attribute filter)."""
    if tag == "img" and attribute in ("src", "srcset") and REMOTE.match(value.strip()):
        return None
    return value


def plain(text: str) -> str:
    """Return text without HTML: tags dropped, script and style contents removed, entities
    decoded, so that what the API calls text is text (a client still escapes it to show it).
    """
    for _ in range(3):  # decoding may reveal markup that was written as entities
        cleaned = html.unescape(nh3.clean(text, tags=set()))
        if cleaned == text:
            break
        text = cleaned
    return text


def loosen_lists(markdown: str) -> str:
    """Put a blank line before a list that follows a paragraph line directly.

    Python-Markdown only starts a list after a blank line, so "Have ready:" followed by
    "- item" lines would otherwise run into one paragraph with literal dashes. Lines in
    fenced code blocks and the items of a list already begun are left alone.
    """
    out: list[str] = []
    in_list = fenced = False
    for line in markdown.split("\n"):
        if line.lstrip().startswith(FENCE):
            fenced = not fenced
        elif not fenced and LIST_ITEM.match(line):
            if out and out[-1].strip() and not in_list:
                out.append("")
            in_list = True
        elif not line.strip():
            in_list = False
        out.append(line)
    return "\n".join(out)
