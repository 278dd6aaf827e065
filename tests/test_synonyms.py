"""The synonyms file: strict parsing, analysis with synonyms, the keyword index built with them."""

import json

import pytest

from kbsearch.content.analysis import (
    KbAnalyzer,
    Lexicon,
    analyze,
    query_term_groups,
    query_terms,
)
from kbsearch.content.articles import Article
from kbsearch.content.synonyms import load_synonyms, parse_synonyms
from kbsearch.errors import IndexBuildError, SynonymsError
from kbsearch.index.builds import build_index, open_index
from kbsearch.index.keyword import KeywordIndex, build_keyword_index

from .conftest import ARTICLES

RULES = """# moving house
Umzug, umziehen, ziehe um, ziehen um

Zähler, Stromuhr
teuer, kostspielig => Preis
Fritzbox, Fritz Box => Router
"""
SYNONYMS = parse_synonyms(RULES)
DE = SYNONYMS.for_language("de")
LEXICON = Lexicon(frozenset({"strom", "zaehler", "stand", "umzug", "kosten"}))


def test_a_file_of_equivalent_and_replacement_lines_is_read_rule_by_rule():
    umzug, zaehler, teuer, fritz = SYNONYMS.rules
    assert (umzug.line, umzug.keep) == (2, True)
    assert umzug.matches == (("umzug",), ("umziehen",), ("ziehe", "um"), ("ziehen", "um"))
    assert umzug.adds == ("umzug", "umziehen")
    assert zaehler.matches == (("zaehler",), ("stromuhr",))
    assert (teuer.matches, teuer.adds, teuer.keep) == ((("teuer",), ("kostspielig",)),
                                                       ("preis",), False)
    assert fritz.matches == (("fritzbox",), ("fritz", "box")) and fritz.adds == ("router",)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("Umzug", "two or more entries"),
        ("Umzug,, umziehen", "an empty entry"),
        ("Umzug, umziehen,", "an empty entry"),
        ("teuer =>", "both sides"),
        ("=> Preis", "both sides"),
        ("a => b => c", "more than one '=>'"),
        ("teuer => hoher Preis", "'hoher preis' on the right of '=>'"),
        ("ziehe um, ziehen um", "at least one single word"),
        ("Umzug, umziehen # Kommentar", "must be words separated by spaces"),
        ("Zähler; Stromuhr", "must be words separated by spaces"),
        ("ich, mein", "only stop words"),
    ],
)
def test_a_bad_line_is_refused_naming_the_file_and_line(line, words):
    with pytest.raises(SynonymsError) as info:
        parse_synonyms(f"# first line\n\n{line}\n", "articles/synonyms.txt")
    assert str(info.value).startswith("articles/synonyms.txt:3: ")
    assert words in str(info.value)
    assert info.value.line == 3


def test_a_missing_file_means_no_synonyms_and_bad_bytes_name_the_line(tmp_path):
    assert load_synonyms(tmp_path / "synonyms.txt").rules == ()
    path = tmp_path / "synonyms.txt"
    path.write_bytes(b"Umzug, umziehen\nZ\xe4hler, Stromuhr\n")
    with pytest.raises(SynonymsError, match=r"synonyms.txt:2: not valid UTF-8"):
        load_synonyms(path)


def test_without_synonyms_query_groups_are_the_single_terms_as_before():
    text = "Wie melde ich meinen Zählerstand beim Umzug?"
    groups = query_term_groups(text, "de", LEXICON)
    assert all(len(group) == 1 for group in groups)
    assert [g[0] for g in groups] == query_terms(text, "de", LEXICON)


@pytest.mark.parametrize(
    "query", ["ich ziehe um", "Wir ziehen um", "Umzüge", "umziehen", "Umzug"]
)
def test_a_query_word_brings_its_equivalents_inflected_or_separated(query):
    groups = query_term_groups(query, "de", LEXICON, DE)
    assert any({"umzug", "umzieh"} <= set(group) for group in groups), groups


def test_a_word_and_its_synonyms_are_one_group_and_compound_parts_stay_apart():
    groups = query_term_groups("Stromzählerstand umziehen", "de", LEXICON, DE)
    assert ("umzieh", "umzug") in groups
    assert ("strom",) in groups and ("zahl",) in groups


def test_articles_keep_one_word_equivalents_but_get_the_words_of_multiword_matches():
    # "Umzug" stays "umzug" in an article: a query for "umziehen" brings "umzug" along,
    # and each word keeps its own document frequency
    assert analyze("Ihr Umzug", "de", LEXICON, DE) == ["umzug"]
    assert set(analyze("Sie ziehen um", "de", LEXICON, DE)) == {"zieh", "umzug", "umzieh"}


def test_a_replacement_applies_to_articles_and_queries_alike():
    assert analyze("Das ist kostspielig", "de", LEXICON, DE) == ["preis"]
    assert query_terms("zu teuer", "de", LEXICON, DE) == ["preis"]
    assert analyze("Meine Fritz Box blinkt", "de", LEXICON, DE) == ["rout", "blinkt"]


def test_the_whoosh_analyzer_puts_added_words_at_the_matched_position():
    analyzer = KbAnalyzer("de", LEXICON, DE)
    tokens = [(t.text, t.pos) for t in analyzer("Sie ziehen um, Zähler", positions=True)]
    assert tokens == [("zieh", 0), ("umzug", 0), ("umzieh", 0), ("zahl", 1)]


def _article(article_id: str, title: str, body: str) -> Article:
    return Article(id=article_id, title=title, language="de", category="c", body=body)


def test_the_keyword_index_finds_articles_through_synonyms_and_counts_a_group_once(tmp_path):
    articles = [
        _article("umzug", "Umzug melden", "Melden Sie Ihren Umzug rechtzeitig."),
        _article("zaehler", "Zähler ablesen", "So lesen Sie den Zähler ab."),
    ]
    build_keyword_index(tmp_path / "kw", articles, LEXICON, SYNONYMS)
    assert (tmp_path / "kw" / "synonyms.txt").read_text("utf-8") == RULES
    index = KeywordIndex(tmp_path / "kw")
    ids, scores = index.search("Stromuhr ablesen", 10, languages=("de",))
    assert ids == ["zaehler"] and scores["zaehler"].coverage == 1.0
    ids, scores = index.search("ich ziehe um", 10, languages=("de",))
    assert ids == ["umzug"] and scores["umzug"].coverage == 1.0
    index.close()


def test_a_build_copies_the_synonyms_and_a_changed_file_takes_effect(
    small_kb, tmp_path, fake_embedder
):
    index_dir = tmp_path / "index"
    first = build_index(small_kb, index_dir, fake_embedder)
    assert open_index(index_dir).keyword.search("Wattmeter", 10)[0] == []
    (small_kb / "synonyms.txt").write_text("Zähler, Wattmeter\n", "utf-8")
    second = build_index(small_kb, index_dir, fake_embedder)
    assert second.synonyms_changed and second.embedded == 0 and first.version != second.version
    manifest = json.loads((second.path / "manifest.json").read_text("utf-8"))
    assert manifest["synonyms"]["rules"] == 1
    assert (second.path / "keyword" / "synonyms.txt").read_text("utf-8") == "Zähler, Wattmeter\n"
    assert open_index(index_dir).keyword.search("Wattmeter", 10)[0][0] == "zaehlerstand-melden"
    third = build_index(small_kb, index_dir, fake_embedder)
    assert not third.synonyms_changed


def test_a_bad_synonyms_file_builds_nothing_and_names_its_line(small_kb, tmp_path, fake_embedder):
    index_dir = tmp_path / "index"
    first = build_index(small_kb, index_dir, fake_embedder)
    (small_kb / "synonyms.txt").write_text("Zähler, Stromuhr\nUmzug\n", "utf-8")
    with pytest.raises(IndexBuildError, match=r"synonyms.txt:2: a rule needs two or more"):
        build_index(small_kb, index_dir, fake_embedder)
    assert open_index(index_dir).version == first.version


def test_the_bundled_synonyms_file_is_valid():
    synonyms = load_synonyms(ARTICLES / "synonyms.txt")
    assert len(synonyms.rules) >= 10
