"""The customers' FAQ pages through Flask's test client: search, browsing, votes, callbacks."""

from __future__ import annotations

import re
import sqlite3
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from kbsearch.content.markdown import loosen_lists
from kbsearch.errors import CallbackError, FeedbackStoreError
from kbsearch.http.context import Components
from kbsearch.http.web import display
from kbsearch.http.web.texts import CATEGORY_NAMES, TEXTS
from kbsearch.stores.callbacks import (
    CallbackRequest,
    CallbackStore,
    SQLiteCallbackStore,
    clean_text,
    parse_callback,
)
from kbsearch.stores.channels_db import SCHEMA_VERSION as CHANNELS_SCHEMA_VERSION

from .conftest import use_callbacks

DE, EN = TEXTS["de"], TEXTS["en"]
STYLE = Path(__file__).resolve().parent.parent / "kbsearch/http/web/static/style.css"
ARTICLE_LINK = re.compile(r'href="/articles/([a-z0-9-]+)(?:\?([^"]*))?"')
INTERNAL_QUERIES = ["Kulanz Gutschrift Regeln", "Eskalation an Teamleitung",
                    "Identität am Telefon prüfen", "Ratenzahlung anlegen", "Stromsperre androhen"]
NONSENSE = "xqzv blorp wibble"


class Page(HTMLParser):
    """The parts of a page the tests look at: form controls, labels, landmarks, links."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.labels: set[str] = set()
        self.tags: list[str] = []
        self.html_lang: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.append(tag)
        if tag == "html":
            self.html_lang = values.get("lang")
        if tag == "label" and values.get("for"):
            self.labels.add(values["for"] or "")
        if tag in ("input", "select", "textarea") and values.get("type") not in (
            "hidden", "submit"
        ):
            self.controls.append(values)


def links(html: str) -> list[tuple[str, dict[str, list[str]]]]:
    """Return the article links of a page: (article id, query parameters)."""
    return [(m.group(1), parse_qs((m.group(2) or "").replace("&amp;", "&")))
            for m in ARTICLE_LINK.finditer(html)]


def result_links(html: str) -> list[tuple[str, dict[str, list[str]]]]:
    """Return the article links that carry a search context."""
    return [(article, query) for article, query in links(html) if "s" in query]


def events_of(service, search_id: str) -> list:
    """Return the feedback events stored for one search."""
    return [e for e in service.feedback.events() if e.search_id == search_id]


def internal_ids(service) -> set[str]:
    """Return the ids of every article the public must never see."""
    return {a.id for a in service.index().articles
            if a.audience != "public" or a.status != "published"}


@pytest.fixture
def callback_store(app, tmp_path) -> CallbackStore:
    """A fresh callback store for this test's app."""
    store = SQLiteCallbackStore(tmp_path / "channels" / "channels.sqlite3")
    use_callbacks(app, store)
    return store


def service_app(sample_service, **changes):
    """An app over the sample index whose settings differ from the defaults."""
    from kbsearch.api import create_app
    from kbsearch.service import SearchService

    settings = sample_service.settings.replace(**changes)
    service = SearchService(settings, embedder=sample_service.embedder)
    return create_app({"TESTING": True}, search_service=service)


# The home page and searching


def test_home_page_is_german_with_search_topics_and_the_way_to_a_human(client, sample_service):
    response = client.get("/")
    html = response.text
    assert response.status_code == 200
    page = Page(html)
    assert page.html_lang == "de"
    assert DE["home_title"] in html and DE["skip"] in html
    assert {"header", "nav", "main", "footer", "aside"} <= set(page.tags)
    assert 'href="tel:08006673100"' in html and "0800 6673 100" in html
    assert f'href="{sample_service.settings.faq_chat_url}"' in html
    assert 'href="/rueckruf"' in html
    assert 'href="/themen/zaehler"' in html and DE["topics_title"] in html
    assert "Content-Security-Policy" in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_search_shows_results_with_context_links_words_and_highlights(client, sample_service):
    html = client.get("/", query_string={"q": "Zählerstand melden"}).text
    found = result_links(html)
    assert found[0][0] == "zaehlerstand-melden"
    search_ids = {query["s"][0] for _, query in found}
    assert len(search_ids) == 1
    assert [int(query["p"][0]) for _, query in found] == list(range(1, len(found) + 1))
    assert len(found) <= sample_service.settings.faq_results
    assert "<mark>Zählerstand</mark>" in html
    assert 'role="status"' in html and 'aria-live="polite"' in html
    assert DE["count_many"].format(count=len(found)) in html
    # the words match the probabilities of the logged search
    logged = sample_service.feedback.get_search(search_ids.pop())
    assert [r.article_id for r in logged.results] == [article for article, _ in found]
    for shown in logged.results:
        assert DE[display.probability_level(shown.probability)] in html
    assert logged.channel == "faq"


def test_the_fragment_is_the_results_alone(client):
    response = client.get("/suche/fragment", query_string={"q": "Router Störung"})
    html = response.text
    assert response.status_code == 200
    assert "<html" not in html and "<header" not in html
    assert 'data-status="' in html
    assert result_links(html)[0][0] == "router-stoerung"


@pytest.mark.parametrize("path", ["/", "/suche/fragment"])
@pytest.mark.parametrize(("query", "message"), [
    ("", DE["query_empty"]),
    ("   ", DE["query_empty"]),
    ("x" * 1001, DE["query_too_long"].format(limit=1000)),
])
def test_bad_queries_get_a_clear_message(client, path, query, message):
    response = client.get(path, query_string={"q": query})
    assert response.status_code == 400
    assert message in response.text
    assert "Traceback" not in response.text


def test_html_in_a_query_is_escaped_everywhere(client):
    query = '<script>alert("x")</script> Zählerstand <b>melden</b>'
    for path in ("/", "/suche/fragment"):
        html = client.get(path, query_string={"q": query}).text
        assert "<script>alert" not in html and "<b>melden" not in html
        assert "&lt;script&gt;" in html
        assert "<mark>Zählerstand</mark>" in html


def test_highlight_marks_folded_prefixes_and_escapes_the_rest():
    marked = display.highlight("Zaehlerstände & <Zähler> melden: Zählernummer.", "Zähler <b>")
    assert str(marked) == ("<mark>Zaehlerstände</mark> &amp; &lt;<mark>Zähler</mark>&gt; "
                           "melden: <mark>Zählernummer</mark>.")
    assert str(display.highlight("<i>Strasse</i>", "Straße")) == (
        "&lt;i&gt;<mark>Strasse</mark>&lt;/i&gt;")
    assert str(display.highlight("a < b", "der die das")) == "a &lt; b"


def test_lists_after_a_paragraph_line_become_lists(client):
    assert loosen_lists("Have ready:\n- one\n- two\n  more\n\nEnd") == (
        "Have ready:\n\n- one\n- two\n  more\n\nEnd")
    assert loosen_lists("Code:\n```\nx\n- y\n```") == "Code:\n```\nx\n- y\n```"
    assert loosen_lists("Steps:\n1. a\n2. b") == "Steps:\n\n1. a\n2. b"
    html = client.get("/articles/router-stoerung").text
    assert "<li>Online in" in html and "- Online in" not in html


@pytest.mark.parametrize(("probability", "key"), [
    (0.95, "prob_very_likely"), (0.8, "prob_very_likely"), (0.79, "prob_likely"),
    (0.5, "prob_likely"), (0.3, "prob_maybe"), (0.1, "prob_unlikely"), (0.0, "prob_unlikely"),
])
def test_probability_words(probability, key):
    assert display.probability_level(probability) == key
    assert DE[key] and EN[key] and DE[key] != EN[key]


def test_probability_words_in_both_languages():
    assert DE["prob_very_likely"] == "passt sehr wahrscheinlich"
    assert EN["prob_very_likely"] == "very likely to help"


def test_a_likely_answer_puts_the_results_before_the_way_to_a_human(client):
    html = client.get("/", query_string={"q": "Zählerstand melden"}).text
    assert "human-first" not in html
    assert html.index('class="results"') < html.index('id="kontakt"')


def test_an_unlikely_answer_puts_the_way_to_a_human_first(client):
    html = client.get("/", query_string={"q": NONSENSE}).text
    assert html.index("human-first") < html.index('class="results"')
    assert DE["human_lead_unsure"] in html
    assert html.count('id="kontakt"') == 1  # the panel moved up; it is not repeated below
    assert 'href="/rueckruf?q=xqzv+blorp+wibble"' in html
    fragment = client.get("/suche/fragment", query_string={"q": NONSENSE}).text
    assert fragment.index("human-first") < fragment.index('class="results"')
    assert 'id="kontakt-suche"' in fragment


def test_the_handoff_threshold_is_a_setting(sample_service):
    client = service_app(sample_service, faq_handoff_below=1.0).test_client()
    html = client.get("/", query_string={"q": "Zählerstand melden"}).text
    assert html.index("human-first") < html.index('class="results"')


def test_no_results_put_the_way_to_a_human_first(sample_service):
    client = service_app(sample_service, min_probability=1.0).test_client()
    html = client.get("/", query_string={"q": "Zählerstand melden"}).text
    assert "human-first" in html and DE["human_lead_none"] in html
    assert not result_links(html)
    assert DE["count_none"] in html


def test_faq_results_setting_limits_the_results(sample_service):
    client = service_app(sample_service, faq_results=3).test_client()
    assert len(result_links(client.get("/?q=Rechnung").text)) == 3


# Browsing


def test_topics_list_every_public_article_once_per_language(client, sample_service):
    html = client.get("/").text
    shown = {article for article, _ in links(html)}
    public = {a.id for a in sample_service.articles()}
    german = {a.id for a in display.for_language(sample_service.articles(), "de")}
    assert german <= shown <= public
    assert "zaehlerstand-melden" in shown and "zaehlerstand-melden-en" not in shown
    english = {a for a, _ in links(client.get("/?ui=en").text)}
    assert "zaehlerstand-melden-en" in english and "zaehlerstand-melden" not in english
    assert "esim-aktivieren" in english  # German only: shown in English too


def test_category_page_lists_its_articles_with_teasers(client):
    response = client.get("/themen/zaehler")
    assert response.status_code == 200
    html = response.text
    assert "<h1>Zähler &amp; Ablesung</h1>" in html
    ids = [article for article, _ in links(html)]
    assert "zaehlerstand-melden" in ids
    assert "Zählerstand melden" in html or "Zählerstand" in html
    english = client.get("/themen/zaehler?ui=en").text
    assert "<h1>Meters &amp; readings</h1>" in english
    assert "zaehlerstand-melden-en" in [a for a, _ in links(english)]


@pytest.mark.parametrize(("path", "language", "title"), [
    ("/themen/gibt-es-nicht", "de", DE["not_found_title"]),
    ("/articles/gibt-es-nicht", "de", DE["not_found_title"]),
    ("/articles/gibt-es-nicht?ui=en", "en", EN["not_found_title"]),
    ("/unbekannt", "de", DE["not_found_title"]),
    ("/unbekannt/tiefer?ui=en", "en", EN["not_found_title"]),
    ("/static/gibt-es-nicht.css", "de", DE["not_found_title"]),
])
def test_unknown_pages_are_404_in_the_ui_language(client, path, language, title):
    response = client.get(path)
    assert response.status_code == 404
    assert Page(response.text).html_lang == language and title in response.text
    assert 'href="tel:' in response.text
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/api/v1/gibt-es-nicht", "/api/v1/search?q=Router",
                                  "/static/style.css", "/healthz"])
def test_every_response_carries_security_headers(client, path):
    with client.get(path) as response:
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


# Articles, clicks and votes


def search_context(client, query="Zählerstand melden", article="zaehlerstand-melden"):
    """Search on the page; return (search_id, position, feedback token) of a result link."""
    for found, params in result_links(client.get("/", query_string={"q": query}).text):
        if found == article:
            return params["s"][0], int(params["p"][0]), params["t"][0]
    raise AssertionError(f"{article} not among the results for {query!r}")


def test_article_page_renders_markdown_and_the_vote_form(client):
    response = client.get("/articles/zaehlerstand-melden")
    html = response.text
    assert response.status_code == 200
    assert "<h1>Wie melde ich meinen Zählerstand?</h1>" in html
    assert "<table>" in html and "Stand: " in html
    assert DE["vote_question"] in html
    assert 'name="vote" value="helpful"' in html and 'name="vote" value="not_helpful"' in html
    assert 'action="/articles/zaehlerstand-melden/vote"' in html
    assert 'name="s"' not in html  # opened without a search
    assert 'href="/articles/zaehlerstand-melden-en"' in html and DE["read_in_en"] in html


def test_opening_a_result_records_a_click_once(client, sample_service):
    search_id, position, token = search_context(client)
    url = f"/articles/zaehlerstand-melden?s={search_id}&p={position}&t={token}"
    for _ in range(2):
        html = client.get(url).text
        assert f'name="s" value="{search_id}"' in html
    clicks = [e for e in events_of(sample_service, search_id) if e.event == "click"]
    assert len(clicks) == 1
    assert (clicks[0].article_id, clicks[0].position, clicks[0].channel) == (
        "zaehlerstand-melden", position, "faq")
    assert DE["back_to_results"].format(query="Zählerstand melden") in html


@pytest.mark.parametrize("query", ["s=0123456789abcdef0123456789abcdef&p=1", "s=nonsense&p=x",
                                   "s=&p=1"])
def test_a_bad_search_context_is_ignored(client, query):
    response = client.get(f"/articles/zaehlerstand-melden?{query}")
    assert response.status_code == 200
    assert 'name="s"' not in response.text


def test_a_yes_vote_from_a_search_is_stored_and_a_repeat_is_recognised(client, sample_service):
    search_id, position, token = search_context(client)
    form = {"vote": "helpful", "s": search_id, "p": str(position), "t": token}
    first = client.post("/articles/zaehlerstand-melden/vote", data=form)
    assert first.status_code == 200 and DE["vote_thanks_yes"] in first.text
    assert "human-first" not in first.text
    helpful = [e for e in events_of(sample_service, search_id) if e.event == "helpful"]
    assert [(e.article_id, e.position, e.channel) for e in helpful] == [
        ("zaehlerstand-melden", position, "faq")]
    again = client.post("/articles/zaehlerstand-melden/vote", data=form)
    assert again.status_code == 200 and DE["vote_duplicate"] in again.text
    assert len([e for e in events_of(sample_service, search_id) if e.event == "helpful"]) == 1


def test_a_no_vote_offers_the_way_to_a_human_first_and_the_other_results(client, sample_service):
    search_id, position, token = search_context(client, "Rechnung Abschlag", "abschlag-anpassen")
    shown = [r.article_id for r in sample_service.feedback.get_search(search_id).results]
    response = client.post("/articles/abschlag-anpassen/vote",
                           data={"vote": "not_helpful", "s": search_id, "p": str(position),
                                 "t": token})
    html = response.text
    assert response.status_code == 200 and DE["vote_thanks_no"] in html
    events = [e for e in events_of(sample_service, search_id) if e.event == "not_helpful"]
    assert [e.article_id for e in events] == ["abschlag-anpassen"]
    # the way to a human comes first, above the alternatives and the article
    assert html.index("human-first") < html.index(DE["alternatives_title"]) < html.index(
        "<article")
    assert html.count('id="kontakt"') == 1
    alternatives = result_links(html[html.index(DE["alternatives_title"]):html.index("<article")])
    assert alternatives, "the other results of the search are offered"
    assert all(params["s"] == [search_id] for _, params in alternatives)
    offered = [article for article, _ in alternatives]
    assert "abschlag-anpassen" not in offered and "abschlag-anpassen-en" not in offered
    assert offered == [a for a in shown if a in offered]  # in the order they were shown
    assert 'href="/rueckruf?article=abschlag-anpassen"' in html


def test_a_vote_while_browsing_is_attached_to_a_search_for_the_title(client, sample_service):
    response = client.post("/articles/sepa-lastschrift/vote", data={"vote": "helpful"})
    assert response.status_code == 200 and DE["vote_thanks_yes"] in response.text
    title = sample_service.article("sepa-lastschrift").title
    mine = [e for e in sample_service.feedback.events()
            if e.article_id == "sepa-lastschrift" and e.event == "helpful"]
    assert mine, "the vote is stored"
    logged = sample_service.feedback.get_search(mine[-1].search_id)
    assert logged.query == " ".join(title.split()) and logged.channel == "faq"
    assert logged.synthetic  # nobody typed it: training leaves it out
    # the browser remembers it: the same vote again is recognised as a repeat
    again = client.post("/articles/sepa-lastschrift/vote", data={"vote": "helpful"})
    assert DE["vote_duplicate"] in again.text


def test_a_no_vote_while_browsing_offers_alternatives_from_the_title_search(client):
    html = client.post("/articles/wlan-langsam/vote", data={"vote": "not_helpful"}).text
    assert DE["vote_thanks_no"] in html and "human-first" in html
    part = html[html.index(DE["alternatives_title"]):html.index("<article")]
    offered = [article for article, _ in result_links(part)]
    assert offered and "wlan-langsam" not in offered


def test_a_vote_that_cannot_be_stored_says_so(client, app, monkeypatch):
    def broken(*args, **kwargs):
        raise FeedbackStoreError("disk full")

    monkeypatch.setattr(Components.of(app).service, "record_feedback", broken)
    response = client.post("/articles/tarifwechsel/vote", data={"vote": "not_helpful"})
    assert response.status_code == 503
    assert DE["vote_failed"] in response.text
    assert "human-first" in response.text and "disk full" not in response.text


def test_a_vote_without_an_answer_is_refused_with_a_message(client):
    response = client.post("/articles/tarifwechsel/vote", data={"vote": "maybe"})
    assert response.status_code == 400 and DE["vote_invalid"] in response.text
    assert 'name="vote" value="helpful"' in response.text  # the form is offered again


def test_the_script_gets_only_the_vote_outcome(client):
    response = client.post("/articles/puk-vergessen/vote",
                           data={"vote": "not_helpful", "partial": "1"})
    html = response.text
    assert response.status_code == 200 and "<html" not in html
    assert 'id="vote-outcome"' in html and 'id="kontakt-artikel"' in html
    assert DE["alternatives_title"] in html


def test_the_vote_address_opened_directly_leads_to_the_article(client):
    response = client.get("/articles/puk-vergessen/vote")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/articles/puk-vergessen")


# The callback form


def test_callback_form_has_a_label_for_every_field(client):
    page = Page(client.get("/rueckruf?q=Strom+zu+teuer").text)
    names = {control.get("name") for control in page.controls}
    assert {"name", "phone", "preferred_time", "description"} <= names
    for control in page.controls:
        assert control.get("id") in page.labels or control.get("aria-label"), control
    assert client.get("/rueckruf?q=Strom+zu+teuer").text.count("Strom zu teuer") >= 1


def test_an_empty_callback_request_names_every_missing_field(client, callback_store):
    response = client.post("/rueckruf", data={})
    html = response.text
    assert response.status_code == 400
    assert DE["errors_title"] in html
    for field in ("name", "phone", "preferred_time", "description"):
        assert DE[f"error_{field}_required"] in html
        assert f'id="{field}-error"' in html
    assert html.count('aria-invalid="true"') == 4
    assert callback_store.recent() == []


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"phone": "call me maybe"}, "phone", DE["error_phone_invalid"]),
    ({"phone": "123"}, "phone", DE["error_phone_invalid"]),
    ({"phone": "+49 1" + "2" * 20}, "phone", DE["error_phone_invalid"]),
    ({"preferred_time": "midnight"}, "preferred_time", DE["error_preferred_time_invalid"]),
    ({"description": "x" * 501}, "description",
     DE["error_description_too_long"].format(limit=500)),
    ({"name": "y" * 101}, "name", DE["error_name_too_long"].format(limit=100)),
])
def test_a_bad_callback_field_gets_its_own_message(client, callback_store, fields, field,
                                                  message):
    form = {"name": "Erika Muster", "phone": "0171 2345678", "preferred_time": "morning",
            "description": "Meine Rechnung ist zu hoch."} | fields
    response = client.post("/rueckruf", data=form)
    assert response.status_code == 400
    assert message in response.text
    assert f'id="{field}" ' in response.text and 'aria-invalid="true"' in response.text
    assert "Erika Muster" in response.text or field == "name"  # typed values are kept
    assert callback_store.recent() == []


def test_a_callback_request_is_stored_and_confirmed(client, callback_store):
    form = {"name": "Erika\x00 Muster\u202e", "phone": "+49 (171) 234-5678",
            "preferred_time": "afternoon", "description": "Zähler\x07stand\r\nfalsch",
            "context": "search: Zählerstand falsch"}
    response = client.post("/rueckruf", data=form)
    assert response.status_code == 303
    target = response.headers["Location"]
    reference = parse_qs(urlsplit(target).query)["nr"][0]
    [stored] = callback_store.recent()
    assert stored.reference == reference
    assert stored.request == CallbackRequest(
        name="Erika Muster", phone="+49 (171) 234-5678", preferred_time="afternoon",
        description="Zählerstand\nfalsch", language="de", context="search: Zählerstand falsch")
    done = client.get(target)
    assert done.status_code == 200
    assert DE["callback_done_title"] in done.text and reference in done.text
    assert DE["time_afternoon"] in done.text


def test_a_callback_request_in_english_is_marked_english(client, callback_store):
    client.get("/?ui=en")
    response = client.post("/rueckruf", data={
        "name": "Jo", "phone": "0171 2345678", "preferred_time": "asap", "description": "Help"})
    assert response.status_code == 303
    assert callback_store.recent()[0].request.language == "en"


def test_a_large_callback_body_is_refused(client, callback_store):
    response = client.post("/rueckruf", data={"name": "x", "description": "y" * 5000})
    assert response.status_code == 413
    assert DE["callback_too_large"] in response.text
    assert callback_store.recent() == []


def test_callback_requests_go_to_the_channels_database(app, sample_service):
    store = Components.of(app).callbacks
    assert isinstance(store, CallbackStore)
    assert store.path == sample_service.settings.channels_db


def test_a_large_vote_body_is_refused(client):
    response = client.post("/articles/puk-vergessen/vote",
                           data={"vote": "helpful", "padding": "x" * 5000})
    assert response.status_code == 413 and "Traceback" not in response.text


def test_the_confirmation_needs_a_well_formed_reference(client):
    assert client.get("/rueckruf/danke?nr=<script>").status_code == 302


def test_a_callback_that_cannot_be_stored_offers_the_phone(client, app, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    use_callbacks(app, SQLiteCallbackStore(blocker / "channels.sqlite3"))
    response = client.post("/rueckruf", data={
        "name": "Jo", "phone": "0171 2345678", "preferred_time": "asap", "description": "Hi"})
    assert response.status_code == 503
    assert DE["callback_failed"].format(phone="0800 6673 100") in response.text


@pytest.mark.parametrize(("text", "multiline", "expected"), [
    ("  Erika \t Muster  ", False, "Erika Muster"),
    ("a\x00b\x1bc\x7f", False, "abc"),
    ("line one\r\nline two\n\n\n\nthree", True, "line one\nline two\n\nthree"),
    ("line one\nline two", False, "line one line two"),
    ("\u202eevil\u2066", False, "evil"),
    ("👩\u200d💻", False, "👩\u200d💻"),
])
def test_clean_text(text, multiline, expected):
    assert clean_text(text, multiline) == expected


@pytest.mark.parametrize(("phone", "valid"), [
    ("0171 2345678", True), ("+49 171 2345678", True), ("(030) 123-456", True),
    ("030/123456", True), ("12345", False), ("+49 171 234567890123", False),
    ("0171-CALL-ME", False), ("49+171234567", False),
])
def test_phone_numbers(phone, valid):
    fields = {"name": "A", "phone": phone, "preferred_time": "asap", "description": "B"}
    if valid:
        assert parse_callback(fields).phone == phone
    else:
        with pytest.raises(CallbackError) as caught:
            parse_callback(fields)
        assert caught.value.problems == {"phone": "invalid"}


def test_callback_store_shares_the_channels_file_and_its_version(tmp_path):
    path = tmp_path / "new" / "folder" / "channels.sqlite3"
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as other:  # a table the callback store does not know
        other.execute("CREATE TABLE conversations (id TEXT PRIMARY KEY)")
    store = SQLiteCallbackStore(path)
    stored = store.add(CallbackRequest("A", "0171 2345678", "asap", "B"), now=5.0)
    store.close()
    with sqlite3.connect(path) as conn:  # one version for the file, from kbsearch.stores
        assert conn.execute("PRAGMA user_version").fetchone()[0] == CHANNELS_SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"conversations", "callback_requests"} <= tables
    again = SQLiteCallbackStore(path)
    assert [(s.reference, s.created) for s in again.recent()] == [(stored.reference, 5.0)]


def test_callback_store_creates_its_folder_and_is_thread_safe(tmp_path):
    store = SQLiteCallbackStore(tmp_path / "missing" / "channels.sqlite3")

    def add(number: int) -> None:
        for i in range(10):
            store.add(CallbackRequest(f"Name {number}-{i}", "0171 2345678", "asap", "x"))

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = store.recent(limit=1000)
    assert len(stored) == 80 and len({s.reference for s in stored}) == 80
    assert all(re.fullmatch(r"RR-[A-Z2-9]{6}", s.reference) for s in stored)


# Language


def test_the_language_switch_is_remembered(client):
    english = client.get("/?ui=en")
    assert Page(english.text).html_lang == "en"
    assert EN["home_title"] in english.text and DE["home_title"] not in english.text
    assert "faq_ui=en" in english.headers["Set-Cookie"]
    assert 'href="/?ui=de"' in english.text
    later = client.get("/articles/zaehlerstand-melden")
    assert Page(later.text).html_lang == "en" and EN["vote_question"] in later.text
    assert client.get("/?ui=de").text.count(DE["home_title"]) >= 1
    assert Page(client.get("/").text).html_lang == "de"


def test_an_unknown_ui_language_falls_back_to_german(client):
    response = client.get("/?ui=fr")
    assert Page(response.text).html_lang == "de" and "Set-Cookie" not in response.headers


def test_the_switch_keeps_the_page_and_the_query(client):
    html = client.get("/", query_string={"q": "Router"}).text
    assert 'href="/?q=Router&amp;ui=en"' in html


@pytest.mark.parametrize("query", ["_external=1&_anchor=x", "article_id=other", "ui=en&ui=de"])
def test_odd_parameters_do_not_break_the_switch(client, query):
    response = client.get(f"/articles/puk-vergessen?{query}")
    assert response.status_code == 200
    assert re.search(r'class="switch" href="/articles/puk-vergessen\?[^"]*ui=(de|en)"',
                     response.text)


def test_english_searches_prefer_english_articles(client):
    html = client.get("/", query_string={"q": "submit meter reading", "ui": "en"}).text
    found = [article for article, _ in result_links(html)]
    assert found[0] == "zaehlerstand-melden-en"
    assert "zaehlerstand-melden" not in found
    assert EN["prob_very_likely"] in html or EN["prob_likely"] in html


def test_english_searches_fall_back_to_german_only_answers(client):
    html = client.get("/", query_string={"q": "activate eSIM", "ui": "en"}).text
    found = [article for article, _ in result_links(html)]
    assert found[0] == "esim-aktivieren"
    assert EN["in_language"].format(language=EN["lang_de"]) in html
    assert 'lang="de">' in html  # the German title is marked as German


def test_the_article_page_links_the_translation(client):
    html = client.get("/articles/zaehlerstand-melden?ui=en").text
    assert 'href="/articles/zaehlerstand-melden-en"' in html and EN["read_in_en"] in html
    only_german = client.get("/articles/esim-aktivieren").text
    assert EN["only_in"].format(language=EN["lang_de"]) in only_german


def test_both_languages_have_every_text():
    assert set(TEXTS["de"]) == set(TEXTS["en"])
    assert set(CATEGORY_NAMES["de"]) == set(CATEGORY_NAMES["en"])


def test_every_category_has_a_name_in_both_languages(sample_service):
    categories = {a.category for a in sample_service.articles()}
    assert categories <= set(CATEGORY_NAMES["de"])


# Visibility, errors and accessibility


def test_no_internal_article_appears_on_any_faq_page(client, sample_service):
    hidden = internal_ids(sample_service)
    assert hidden, "the sample knowledge base has internal articles"
    pages = [client.get("/").text, client.get("/?ui=en").text]
    for query in INTERNAL_QUERIES:
        pages.append(client.get("/", query_string={"q": query}).text)
        pages.append(client.get("/suche/fragment", query_string={"q": query}).text)
    pages += [client.get(f"/themen/{c}").text for c in CATEGORY_NAMES["de"]]
    pages.append(client.post("/articles/kontakt-oeffnungszeiten/vote",
                             data={"vote": "not_helpful"}).text)
    for html in pages:
        assert not {article for article, _ in links(html)} & hidden
        assert not any(f"/articles/{article}" in html for article in hidden)
    for article in hidden:
        assert client.get(f"/articles/{article}").status_code == 404
        assert client.post(f"/articles/{article}/vote",
                           data={"vote": "helpful"}).status_code == 404
        assert f"article: {article}" not in client.get(f"/rueckruf?article={article}").text


def test_an_unexpected_error_shows_a_page_without_internals(client, app, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Components.of(app).service, "articles", boom)
    response = client.get("/")
    assert response.status_code == 500
    assert "secret" not in response.text and "Traceback" not in response.text
    assert DE["error_title"] in response.text and 'href="tel:08006673100"' in response.text


@pytest.mark.parametrize("path", ["/", "/?q=Router", "/themen/internet",
                                  "/articles/router-stoerung", "/rueckruf", "/articles/nope"])
def test_every_input_has_a_label_and_the_page_has_landmarks(client, path):
    response = client.get(path)
    page = Page(response.text)
    assert page.html_lang in ("de", "en")
    assert {"header", "nav", "main", "footer"} <= set(page.tags)
    for control in page.controls:
        assert control.get("id") in page.labels or control.get("aria-label"), (path, control)
    assert response.text.index('class="skip"') < response.text.index("<header")


def contrast(first: str, second: str) -> float:
    """Return the WCAG contrast ratio of two #rrggbb colours."""
    def luminance(colour: str) -> float:
        channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_text_colours_meet_wcag_aa():
    colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6})", STYLE.read_text()))
    pairs = [("ink", "bg"), ("ink", "surface"), ("ink", "accent-soft"), ("ink", "mark"),
             ("muted", "bg"), ("muted", "surface"), ("accent", "bg"), ("accent", "surface"),
             ("accent", "accent-soft"), ("on-accent", "accent"), ("on-accent", "accent-dark"),
             ("focus", "bg"), ("problem-ink", "problem-bg"), ("ok-ink", "ok-bg")]
    pairs += [(f"fit-{x}-ink", f"fit-{x}-bg") for x in ("high", "mid", "low", "none")]
    for foreground, background in pairs:
        ratio = contrast(colours[foreground], colours[background])
        assert ratio >= 4.5, f"--{foreground} on --{background}: {ratio:.2f}"
