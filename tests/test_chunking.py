import random
import re

from kbsearch.content.chunking import Chunk, chunk_article, plain_text, split_sections, word_count

from .conftest import ARTICLES

BODY = """# Titel

Einleitung in einem Satz.

## Erster Abschnitt
Text eins mit **fett** und [Link](https://example.org).

## Zweiter Abschnitt
Text zwei.

```
# kein Heading im Codeblock
```
"""


def test_sections_split_at_headings_but_not_inside_code():
    sections = split_sections(BODY)
    assert [s.heading for s in sections] == ["Titel", "Erster Abschnitt", "Zweiter Abschnitt"]
    assert "# kein Heading" in sections[2].text


def test_plain_text_strips_markdown():
    assert plain_text("Text mit **fett** und [Link](https://x.org).") == "Text mit fett und Link."
    assert plain_text("1. Schritt\n- Punkt") == "Schritt\nPunkt"


def reference_plain_text(markdown: str) -> str:
    """plain_text as written before it skipped patterns whose text is absent."""
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", " ", text)
    text = re.sub(r"(\*\*|__|\*|`)", "", text)
    text = re.sub(r"^\s*\|?\s*:?-{3,}.*$", "", text, flags=re.M)
    text = re.sub(r"\s*\|\s*", " | ", text)
    text = re.sub(r"^\s{0,3}(#{1,6}|>|[-*+]|\d+[.)])\s+", "", text, flags=re.M)
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def test_plain_text_is_the_rule_as_written_before():
    rng = random.Random(3)
    alphabet = " \t\n\r|-*_`#>![]()<:.1aä"
    texts = [path.read_text("utf-8") for path in sorted(ARTICLES.glob("*.md"))]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
              for _ in range(5000)]
    for text in texts:
        assert plain_text(text) == reference_plain_text(text), repr(text)


def test_short_sections_merge_into_one_chunk_led_by_the_title():
    chunks = chunk_article("a", "Titel", BODY, word_count, 256)
    assert len(chunks) == 1
    assert chunks[0].text.startswith("Titel\n")
    assert "Erster Abschnitt" in chunks[0].text and "Text zwei." in chunks[0].text


def test_long_sections_split_under_the_budget():
    long_body = "## Lang\n" + "\n\n".join(
        " ".join(f"Wort{i}_{j}" for j in range(40)) + "." for i in range(10)
    )
    chunks = chunk_article("a", "Titel", long_body, word_count, 100)
    assert len(chunks) > 3
    assert all(word_count(c.text) <= 100 for c in chunks)
    assert all(c.text.startswith("Titel\n") for c in chunks)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    words = " ".join(c.text for c in chunks)
    assert "Wort0_0" in words and "Wort9_39" in words


def test_article_with_only_a_title_heading_still_has_a_chunk():
    assert chunk_article("a", "T", "# T", word_count, 50) == [Chunk("a", 0, "", "T")]
