import gc
import random
import uuid

import pytest

from kbsearch.content.analysis import (
    FOLD,
    KbAnalyzer,
    Lexicon,
    analyze,
    detect_language,
    fold,
    query_terms,
    stem,
)

LEXICON = Lexicon.from_texts(
    ["Der Zähler zeigt den Stand. Die Meldung kommt. Das Gas und der Strom. "
     "Die Kunde hat eine Nummer. Vertrag und Ende. Tarif Wechsel."]
)


@pytest.mark.parametrize(
    ("a", "b"),
    [("Zähler", "Zaehler"), ("Straße", "Strasse"), ("Kündigung", "Kuendigung"),
     ("Größe", "Groesse"), ("GEBÜHREN", "gebuehren"), ("Häuser", "Haus")],
)
def test_umlaut_spellings_meet_in_one_term(a, b):
    assert analyze(a, "de") == analyze(b, "de")


def test_fold_spells_umlauts_out():
    assert fold("Zählerstandsmeldung Größe") == "zaehlerstandsmeldung groesse"
    assert fold("ẞ don’t Äpfel") == "ss don't aepfel"


def test_fold_is_lower_case_and_the_fold_table_on_any_text():
    rng = random.Random(7)
    alphabet = "aAzZäÄöÖüÜßẞ’'İı -.\n\tÉéçΣσς1_"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert fold(text) == text.lower().translate(FOLD), text


@pytest.mark.parametrize(
    ("word", "parts"),
    [
        ("zaehlerstand", ("zaehler", "stand")),
        ("zaehlerstandsmeldung", ("zaehler", "stand", "meldung")),
        ("gaszaehler", ("gas", "zaehler")),
        ("kundennummer", ("kunde", "nummer")),
        ("vertragsende", ("vertrag", "ende")),
        ("tarifwechsel", ("tarif", "wechsel")),
    ],
)
def test_compounds_split_into_known_parts(word, parts):
    assert LEXICON.split(word) == parts


@pytest.mark.parametrize("word", ["rechnungen", "zaehler", "verbindung", "abc"])
def test_non_compounds_stay_whole(word):
    assert LEXICON.split(word) == ()


def test_part_finds_compound_and_compound_finds_part():
    document = set(analyze("Bitte melden Sie Ihren Zählerstand.", "de", LEXICON))
    assert set(query_terms("Zähler", "de", LEXICON)) <= document
    compound_query = set(query_terms("Zählerstand", "de", LEXICON))
    assert set(analyze("Der Zähler", "de", LEXICON)) <= compound_query


def test_stop_words_are_dropped_but_a_stopword_query_still_searches():
    assert analyze("Wie kann ich den Zähler ablesen?", "de") == ["zahl", "ables"]
    assert query_terms("wie was wo", "de") != []


def test_english_is_stemmed_with_the_english_stemmer():
    assert analyze("How do I report my meter readings?", "en") == ["report", "meter", "read"]


def test_whoosh_analyzer_gives_parts_the_position_of_their_compound():
    analyzer = KbAnalyzer("de", LEXICON)
    tokens = [(t.text, t.pos) for t in analyzer("Zählerstand melden", positions=True)]
    assert tokens == [("zahlerstand", 0), ("zahl", 0), ("stand", 0), ("meld", 1)]


def test_analyzer_rejects_unknown_language():
    with pytest.raises(ValueError, match="no analyzer"):
        KbAnalyzer("fr")


@pytest.mark.parametrize(
    ("text", "language"),
    [("Wie melde ich meinen Zählerstand?", "de"), ("Internet geht nicht", "de"),
     ("How do I pay my bill by bank transfer?", "en"), ("Rechnung", "de")],
)
def test_language_detection(text, language):
    assert detect_language(text) == language


def test_each_lexicon_caches_its_own_splits_and_pickles_as_its_words():
    import pickle

    from kbsearch.content.analysis import Lexicon

    words = frozenset({"strom", "zaehler", "stand", "umzug", "kosten"})
    first, again = Lexicon(words), Lexicon(frozenset(set(words)))
    assert first.split("zaehlerstand") == ("zaehler", "stand")
    # an equal lexicon built again (a reindex, a reload) must not look up, and compare its
    # whole word set against, the first one's cache entries: that made reindexes slow
    assert again._segments.cache_info().currsize == 0
    assert again.split("stromkosten") == ("strom", "kosten")
    copy = pickle.loads(pickle.dumps(first))  # Whoosh keeps the analyser in the index
    assert copy == first and copy.split("umzugskosten") == ("umzug", "kosten")
    assert copy._segments.cache_info().currsize > 0


def test_stemming_new_words_leaves_nothing_for_a_full_garbage_collection_to_walk():
    # a server stems every new word its queries bring; PyStemmer's own cache kept a list
    # per word (up to 10,000 per language) that every full collection walked
    prefix = uuid.uuid4().hex[:8]
    words = [f"zaehler{prefix}{i}ungen" for i in range(2000)]
    gc.collect()
    before = len(gc.get_objects())
    stems = [stem(word, language) for word in words for language in ("de", "en")]
    gc.collect()
    assert len(gc.get_objects()) - before < 200
    assert stems[0] == stem(words[0], "de") and stems[0] != words[0]
