"""The FAQ pages in a real browser: Debian's Chromium driven by Playwright.

The app is served for real on 127.0.0.1 (a werkzeug server in a thread), with the real
model, so that the screenshots show what customers see. The tests save screenshots of the
main pages into a temporary folder, or into $KBSEARCH_SCREENSHOTS: scripts/screenshots.sh
points it at docs/screenshots/ to refresh the saved pictures. Without Chromium at
/usr/bin/chromium or the playwright package the tests are skipped, except under CI (the CI
variable set), where they fail: scripts/test.sh installs Chromium.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch.http.context import Components
from kbsearch.http.web.texts import TEXTS

SCREENSHOTS_VARIABLE = "KBSEARCH_SCREENSHOTS"  # scripts/screenshots.sh: docs/screenshots
SCREENSHOTS: Path | None = None  # where screenshot() saves: set by screenshot_folder
DE, EN = TEXTS["de"], TEXTS["en"]
NONSENSE = "xqzv blorp wibble"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def screenshot_folder(tmp_path_factory) -> Iterator[Path]:
    """Save screenshots in $KBSEARCH_SCREENSHOTS if set, else in a temporary folder."""
    chosen = os.environ.get(SCREENSHOTS_VARIABLE)
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys.modules[__name__], "SCREENSHOTS", folder)
        yield folder


@pytest.fixture(scope="module")
def browser_service(model_index, embedder, tmp_path_factory):
    """A search service over the real model's sample index, with this module's own stores."""
    from .conftest import service_over

    return service_over(tmp_path_factory.mktemp("browser"), model_index, embedder)


@pytest.fixture(scope="module")
def server(browser_service) -> Iterator[tuple[str, Any]]:
    """The app served on 127.0.0.1 on a free port; yields (base address, app)."""
    from kbsearch.api import create_app

    from .conftest import serving

    app = create_app({"TESTING": True}, search_service=browser_service)
    with serving(app, "faq-server") as base:
        yield base, app


@pytest.fixture
def base(server) -> str:
    """The address of the served app."""
    return server[0]


def screenshot(page: Any, name: str) -> None:
    """Save the visible part of the page as <name>.png in the screenshot folder."""
    assert SCREENSHOTS is not None, "the screenshot_folder fixture chooses the folder"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # settled pages only, so that a saved picture changes only when the page does
    page.wait_for_load_state("networkidle")
    page.evaluate("document.fonts.ready.then(() => true)")
    picture = page.screenshot(animations="disabled", caret="hide")
    target = SCREENSHOTS / f"{name}.png"
    if not target.exists() or not looks_the_same(target.read_bytes(), picture):
        target.write_bytes(picture)


def looks_the_same(old: bytes, new: bytes) -> bool:
    """Tell whether two screenshots differ only by anti-aliasing noise.

    Software rendering shades the odd edge pixel one level differently from run to run;
    keeping the saved picture then leaves the checkout unchanged.
    """
    import io

    from PIL import Image, ImageChops

    first, second = (Image.open(io.BytesIO(data)).convert("RGB") for data in (old, new))
    if first.size != second.size:
        return False
    difference = ImageChops.difference(first, second).convert("L")
    changed = sum(difference.point(lambda level: 255 if level > 8 else 0).histogram()[255:])
    return changed == 0


def type_query(page: Any, query: str, click: bool = True) -> None:
    """Type into the search box key by key, as a person would, and wait for the results."""
    if click:
        page.click("#q")
    page.keyboard.type(query, delay=40)
    page.wait_for_function(
        "q => document.querySelector('#results .results-title')?.textContent.includes(q)",
        arg=query,
    )


def search_context(href: str) -> tuple[str, int]:
    """Return the search id and position a result link carries."""
    found = re.search(r"[?&]s=([0-9a-f]{32})&(?:amp;)?p=(\d+)", href)
    assert found, href
    return found.group(1), int(found.group(2))


def test_results_appear_as_you_type(page, base):
    page.goto(base + "/")
    assert page.locator("html").get_attribute("lang") == "de"
    screenshot(page, "home")
    fragments: list[str] = []
    page.on("request", lambda request: fragments.append(request.url)
            if "/suche/fragment" in request.url else None)
    page.evaluate("window.notReloaded = true")
    type_query(page, "Zählerstand melden")
    first = page.locator("#results .result h3 a").first
    assert first.inner_text() == "Wie melde ich meinen Zählerstand?"
    assert page.evaluate("window.notReloaded") is True  # no Enter, no page load
    assert 1 <= len(fragments) <= 3, fragments  # debounced, not one request per key
    assert "Artikel gefunden" in page.locator("#results-status").inner_text()
    assert page.locator("#results mark").first.inner_text().startswith("Zählerstand")
    assert page.locator("#results .fit").first.inner_text().split("\n")[-1] in {
        DE["prob_very_likely"], DE["prob_likely"]}
    assert "q=Z%C3%A4hlerstand" in page.url  # the address can be shared or reloaded
    screenshot(page, "live-results")


def test_opening_an_article_and_voting_yes(page, base, browser_service):
    page.goto(base + "/")
    type_query(page, "Router Störung")
    link = page.locator("#results .result h3 a").first
    search_id, position = search_context(link.get_attribute("href"))
    link.click()
    page.wait_for_url(re.compile(r"/articles/router-stoerung\?"))
    assert page.locator("article h1").inner_text().startswith("Internet geht nicht")
    screenshot(page, "article")
    page.get_by_role("button", name=DE["vote_yes"], exact=True).click()
    outcome = page.locator("#vote-outcome")
    outcome.wait_for()
    assert DE["vote_thanks_yes"] in outcome.inner_text()
    assert page.evaluate("document.activeElement.id") == "vote-outcome"
    events = {(e.event, e.article_id, e.position) for e in browser_service.feedback.events()
              if e.search_id == search_id}
    assert {("click", "router-stoerung", position),
            ("helpful", "router-stoerung", position)} <= events


def test_voting_no_offers_alternatives_and_the_way_to_a_human(page, base, browser_service):
    page.goto(base + "/")
    type_query(page, "Abschlag ändern")
    link = page.locator("#results .result h3 a").first
    search_id, _ = search_context(link.get_attribute("href"))
    article_id = re.search(r"/articles/([a-z0-9-]+)", link.get_attribute("href")).group(1)
    link.click()
    page.wait_for_url(re.compile(r"/articles/"))
    page.get_by_role("button", name=DE["vote_no"], exact=True).click()
    outcome = page.locator("#vote-outcome")
    outcome.wait_for()
    assert DE["vote_thanks_no"] in outcome.inner_text()
    human = outcome.locator(".human-first")
    assert human.is_visible()
    assert human.get_by_role("link", name=re.compile(DE["call_title"])).get_attribute(
        "href") == "tel:08006673100"
    assert human.get_by_role("link", name=re.compile(DE["callback_title"])).is_visible()
    alternatives = outcome.locator(".alternatives a")
    assert alternatives.count() >= 1
    hrefs = [alternatives.nth(i).get_attribute("href") for i in range(alternatives.count())]
    assert all(f"s={search_id}" in href for href in hrefs)
    assert not any(f"/articles/{article_id}?" in href for href in hrefs)
    # the way to a human comes before the alternatives
    assert human.bounding_box()["y"] < outcome.locator(".alternatives").bounding_box()["y"]
    assert ("not_helpful", article_id) in {
        (e.event, e.article_id) for e in browser_service.feedback.events()
        if e.search_id == search_id}
    page.mouse.move(0, 0)
    screenshot(page, "after-no")


def test_an_unlikely_answer_hands_off_to_a_person(page, base, server):
    page.goto(base + "/")
    type_query(page, NONSENSE)
    human = page.locator("#results .human-first")
    assert human.is_visible()
    first_result = page.locator("#results .result").first
    assert human.bounding_box()["y"] < first_result.bounding_box()["y"]
    human.get_by_role("link", name=re.compile(DE["callback_title"])).click()
    page.wait_for_url(re.compile(r"/rueckruf\?"))
    assert page.locator("#description").input_value() == NONSENSE
    # sent empty: every field says what is wrong
    page.locator("#description").fill("")
    page.get_by_role("button", name=DE["callback_submit"]).click()
    page.locator(".error-summary").wait_for()
    assert page.locator("[aria-invalid=true]").count() == 4
    assert DE["error_phone_required"] in page.locator("#phone-error").inner_text()
    page.get_by_label(DE["field_name"]).fill("Erika Mustermann")
    page.get_by_label(DE["field_phone"]).fill("0171 2345678")
    page.get_by_label(DE["field_time"]).select_option("morning")
    page.get_by_label(DE["field_description"]).fill("Mein Anliegen passt in keinen Artikel.")
    page.get_by_role("button", name=DE["callback_submit"]).click()
    page.wait_for_url(re.compile(r"/rueckruf/danke\?"))
    heading = page.locator("h1").inner_text()
    assert heading == DE["callback_done_title"]
    reference = page.locator(".reference strong").inner_text()
    assert re.fullmatch(r"RR-[A-Z2-9]{6}", reference)
    # the reference is random: the saved picture shows a fixed one, so it changes only when
    # the page does
    page.locator(".reference strong").evaluate("el => { el.textContent = 'RR-7K3M9P'; }")
    screenshot(page, "callback-confirmation")
    stored = Components.of(server[1]).callbacks.recent()
    assert stored[0].reference == reference
    assert stored[0].request.name == "Erika Mustermann"
    assert stored[0].request.context == f"search: {NONSENSE}"


def test_keyboard_only(page, base):
    page.goto(base + "/")
    page.keyboard.press("Tab")
    skip = page.evaluate("[document.activeElement.className, document.activeElement.textContent]")
    assert skip == ["skip", DE["skip"]]
    box = page.locator(".skip").bounding_box()
    assert box["y"] >= 0 and box["height"] > 0  # visible while focused
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "q"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    type_query(page, "Zählerstand melden", click=False)
    page.keyboard.press("Tab")  # the search button
    page.keyboard.press("Tab")  # the first result
    assert page.evaluate("document.activeElement.closest('.result') !== null")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/articles/zaehlerstand-melden\?"))
    for _ in range(80):  # Tab on to the "yes" button and press it
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.value") == "helpful":
            break
    else:
        raise AssertionError("the vote buttons cannot be reached with Tab")
    page.keyboard.press("Enter")
    page.locator("#vote-outcome").wait_for()
    assert page.evaluate("document.activeElement.id") == "vote-outcome"


def test_switching_to_english(page, base):
    page.goto(base + "/")
    page.get_by_role("link", name=DE["switch_label"]).click()
    page.wait_for_url(re.compile(r"ui=en"))
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == EN["home_title"]
    screenshot(page, "home-en")
    page.goto(base + "/")  # remembered
    assert page.locator("html").get_attribute("lang") == "en"
    type_query(page, "submit meter reading")
    first = page.locator("#results .result h3 a").first
    assert "/articles/zaehlerstand-melden-en?" in first.get_attribute("href")
    assert "articles found" in page.locator("#results-status").inner_text()
    page.get_by_role("link", name=EN["switch_label"]).click()
    page.wait_for_url(re.compile(r"ui=de"))
    assert page.locator("html").get_attribute("lang") == "de"
    assert "q=submit" in page.url  # the switch keeps the query typed


def test_without_javascript_search_read_and_vote(plain_page, base, browser_service):
    page = plain_page
    page.goto(base + "/")
    assert page.locator("#q-hint").is_hidden()  # "results as you type" needs the script
    page.fill("#q", "WLAN Passwort ändern")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"\?q=WLAN"))
    first = page.locator("#results .result h3 a").first
    search_id, _ = search_context(first.get_attribute("href"))
    first.click()
    page.wait_for_url(re.compile(r"/articles/"))
    assert page.locator("article h1").is_visible()
    page.get_by_role("button", name=DE["vote_no"], exact=True).click()
    page.wait_for_url(re.compile(r"/vote$"))
    outcome = page.locator("#vote-outcome")
    assert DE["vote_thanks_no"] in outcome.inner_text()
    assert outcome.locator(".human-first").is_visible()
    # with the page reloaded, the outcome is on top, above the article
    assert outcome.bounding_box()["y"] < page.locator("article").bounding_box()["y"]
    assert "not_helpful" in {e.event for e in browser_service.feedback.events()
                             if e.search_id == search_id}
