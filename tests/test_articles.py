from pathlib import Path

import pytest

from kbsearch.content.articles import load_articles, parse_article
from kbsearch.content.visibility import may_see
from kbsearch.errors import ArticleError, ArticlesNotFoundError

from .conftest import ARTICLES

GOOD = """---
id: zaehlerstand-melden
title: Wie melde ich meinen Zählerstand?
language: de
tags: [Zähler, strom]
category: zaehler
audience: public
status: published
updated: 2026-09-14
review_by: 2027-03-31
related: [abschlag-anpassen]
---
# Wie melde ich meinen Zählerstand?

Im Kundenportal unter „Zählerstand melden“.
"""


def parse(text: str | bytes, name: str = "a.md"):
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return parse_article(Path(name), raw)


def test_parses_a_valid_article():
    article = parse(GOOD)
    assert article.id == "zaehlerstand-melden"
    assert article.title == "Wie melde ich meinen Zählerstand?"
    assert article.tags == ("zähler", "strom")
    assert article.updated.isoformat() == "2026-09-14"
    assert article.related == ("abschlag-anpassen",)
    assert may_see(article, "public")
    assert article.body.startswith("# Wie melde")
    assert len(article.content_hash) == 64


@pytest.mark.parametrize(
    ("change", "line", "field", "words"),
    [
        (("language: de", "language: fr"), 4, "language", "'fr' is not one of de, en"),
        (("id: zaehlerstand-melden", "id: Zählerstand melden"), 2, "id", "not a slug"),
        (("audience: public", "audience: everyone"), 7, "audience", "not one of public"),
        (("status: published", "status: live"), 8, "status", "not one of draft"),
        (("updated: 2026-09-14", "updated: 2026-13-45"), 9, "updated", "not a date"),
        (("category: zaehler", "category: ''"), 6, "category", "is required"),
        (("audience: public", "audiance: internal"), 7, "audiance", "unknown field"),
        (("related: [abschlag-anpassen]", "related: {a: 1}"), 11, "related", "list"),
    ],
)
def test_invalid_field_names_file_line_and_field(change, line, field, words):
    with pytest.raises(ArticleError) as info:
        parse(GOOD.replace(*change), "kb/a.md")
    error = info.value
    assert (error.line, error.field) == (line, field)
    assert words in str(error)
    assert str(error).startswith(f"kb/a.md:{line}: field '{field}':")


def test_missing_required_field_is_named():
    with pytest.raises(ArticleError) as info:
        parse(GOOD.replace("title: Wie melde ich meinen Zählerstand?\n", ""))
    assert info.value.field == "title"
    assert "is required" in str(info.value)


def test_malformed_yaml_names_the_line():
    with pytest.raises(ArticleError) as info:
        parse(GOOD.replace("tags: [Zähler, strom]", "tags: [Zähler, strom"))
    assert "not valid YAML" in str(info.value)
    assert info.value.line is not None and 5 <= info.value.line <= 8


def test_non_utf8_file_names_the_line():
    raw = GOOD.encode("utf-8").replace(b"Im Kundenportal", b"Im Kundenport\xe4l")
    with pytest.raises(ArticleError) as info:
        parse(raw)
    assert info.value.line == 15
    assert "UTF-8" in str(info.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("# Nur Text\n", "no front matter"),
        ("---\nid: a\n", "not closed"),
        (GOOD.split("# Wie melde")[0], "no text after the front matter"),
    ],
)
def test_structural_errors(text, words):
    with pytest.raises(ArticleError, match=words):
        parse(text)


def test_bad_file_is_reported_and_others_still_load(tmp_path):
    (tmp_path / "good.md").write_text(GOOD, "utf-8")
    (tmp_path / "bad.md").write_text(GOOD.replace("language: de", "language: xx"), "utf-8")
    result = load_articles(tmp_path)
    assert [a.path for a in result.articles] == ["good.md"]
    assert len(result.errors) == 1 and result.errors[0].path.name == "bad.md"


def test_duplicate_ids_keep_the_first_and_report_the_second(tmp_path):
    (tmp_path / "a.md").write_text(GOOD, "utf-8")
    (tmp_path / "b.md").write_text(GOOD, "utf-8")
    result = load_articles(tmp_path)
    assert [a.path for a in result.articles] == ["a.md"]
    (error,) = result.errors
    assert error.field == "id" and error.line == 2
    assert "duplicate id 'zaehlerstand-melden', already used by a.md" in str(error)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ArticlesNotFoundError, match="does not exist"):
        load_articles(tmp_path / "nope")


def test_bundled_knowledge_base_is_valid_and_complete():
    result = load_articles(ARTICLES)
    assert result.errors == ()
    articles = result.articles
    assert len(articles) >= 60
    internal = [a for a in articles if a.audience == "internal"]
    english = [a for a in articles if a.language == "en"]
    assert 8 <= len(internal) <= 15
    assert len(english) >= 10
    ids = {a.id for a in articles}
    for article in articles:
        assert article.translation_of is None or article.translation_of in ids
        assert set(article.related) <= ids, article.id
    assert {a.status for a in articles} == {"published", "draft", "archived"}


MARKUP = ['Zähler <img src=x onerror="alert(1)">', "<script>alert(1)</script>Zählerstand",
          "Zählerstand &lt;b&gt;melden&lt;/b&gt;", "<svg onload=alert(1)>"]


@pytest.mark.parametrize("title", MARKUP)
def test_a_title_with_markup_is_refused(title):
    text = GOOD.replace("title: Wie melde ich meinen Zählerstand?", f"title: '{title}'")
    with pytest.raises(ArticleError, match="a.md:3: field 'title': holds HTML markup"):
        parse(text)


@pytest.mark.parametrize("markup", MARKUP)
@pytest.mark.parametrize("field, line, written, instead", [
    ("category", 6, "category: '{}'", "category: zaehler"),
    ("tags", 5, "tags: [Zähler, '{}']", "tags: [Zähler, strom]"),
    ("questions", 14, "related: [abschlag-anpassen]\nquestions:\n  - Wie melde ich den "
                      "Stand?\n  - '{}'", "related: [abschlag-anpassen]"),
])
def test_category_tags_and_questions_with_markup_are_refused(markup, field, line, written,
                                                             instead):
    text = GOOD.replace(instead, written.format(markup))
    with pytest.raises(ArticleError, match=rf"a.md:{line}: field '{field}': holds HTML markup"):
        parse(text)


def test_a_title_with_ampersand_and_comparisons_is_plain_text():
    text = GOOD.replace("title: Wie melde ich meinen Zählerstand?",
                        "title: 'Strom & Gas: Preise < 30 ct?'")
    assert parse(text).title == "Strom & Gas: Preise < 30 ct?"


def test_snippets_are_plain_text_without_script():
    from kbsearch.content.snippets import article_snippet

    hostile = GOOD.replace("Im Kundenportal unter „Zählerstand melden“.", (
        'Im Kundenportal <script>alert("x")</script> unter <b onclick="steal()">Zählerstand'
        '</b> melden. <img src="https://evil.example/t.gif"> &lt;i&gt;Danke&lt;/i&gt;'))
    snippet = article_snippet(parse(hostile), "Zählerstand melden")
    assert "Kundenportal" in snippet and "Zählerstand" in snippet
    for markup in ("<", "alert", "steal", "evil.example", "&lt;"):
        assert markup not in snippet, markup


def test_article_files_come_in_path_order_folder_by_folder(tmp_path):
    from kbsearch.content.articles import article_files

    for name in ("a-b/x.md", "a/x.md", "a/b/y.md", "b.md", "a.md/not-a-file.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "linked.md").symlink_to(tmp_path / "b.md")  # a linked file counts
    (tmp_path / "c").symlink_to(tmp_path / "a", target_is_directory=True)  # not entered
    (tmp_path / "broken.md").symlink_to(tmp_path / "nowhere.md")
    found = [str(p.relative_to(tmp_path)) for p in article_files(tmp_path)]
    assert found == ["a/b/y.md", "a/x.md", "a-b/x.md", "b.md", "linked.md"]
    assert found == [str(p.relative_to(tmp_path)) for p in sorted(
        p for p in tmp_path.rglob("*.md") if p.is_file())]
