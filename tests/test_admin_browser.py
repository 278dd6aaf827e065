"""The operators' dashboard in a real browser: Debian's Chromium driven by Playwright.

As in tests/test_browser.py, the app is served for real on 127.0.0.1 (a werkzeug server in a
thread); here over a copy of the sample index built with the fake embedder, since the
dashboard shows no ranking. The tests log in through the form, look at the dashboard, draw a
chart and start a reindex with the button, and save screenshots into a temporary folder or
$KBSEARCH_SCREENSHOTS (scripts/screenshots.sh: docs/screenshots/). Chromium keeps the
dashboard's ``Secure`` session cookie over plain http because the address is 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch.http.context import Components
from kbsearch.index.builds import current_version
from kbsearch.ranking.versions import default_ranker
from kbsearch.stores.callbacks import CallbackRequest

from .conftest import ARTICLES, serving
from .test_admin import KB_FILES, make_app
from .test_browser import (
    SCREENSHOTS_VARIABLE,
    looks_the_same,
)

SCREENSHOTS: Path | None = None  # where screenshot() saves: set by screenshot_folder
# What changes from run to run is shown as fixed text in the saved pictures (a list: one
# text per element found).
STEADY: dict[str, str | list[str]] = {
    "#index-version": "20261129T090000000000Z-5e2a91c4",
    "#index-built": "2026-11-29 09:00:00 UTC",
    "#login-until": "2026-11-29 17:00:00 UTC",
    "#login-key": "(key 6a8613ca)",
    "#callbacks tbody th code": ["RR-GCMQ9L", "RR-KDKAY6"],
}
CREATED = 1_796_000_000.0  # 2026-11-30 00:53 UTC: the callback requests shown
GOOD_CHECKS = {"held_out_dcg": {"current": 0.4812, "new": 0.5034},
               "judged_ndcg@10": {"current": 0.9101, "new": 0.9134}}
WORSE_CHECKS = {"held_out_dcg": {"current": 0.5034, "new": 0.5041},
                "judged_ndcg@10": {"current": 0.9134, "new": 0.8870}}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def screenshot_folder(tmp_path_factory) -> Iterator[Path]:
    """Save screenshots in $KBSEARCH_SCREENSHOTS if set, else in a temporary folder."""
    chosen = os.environ.get(SCREENSHOTS_VARIABLE)
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("admin-screenshots")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys.modules[__name__], "SCREENSHOTS", folder)
        yield folder


@pytest.fixture(scope="module")
def served(tmp_path_factory, sample_index, fake_embedder) -> Iterator[tuple[str, Any, str]]:
    """The app on 127.0.0.1 over a copy of the sample index; yields (address, app, key)."""
    folder = tmp_path_factory.mktemp("admin-browser")
    kb = folder / "articles"
    for name in KB_FILES:
        (kb / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ARTICLES / name, kb / name)
    app = make_app(folder, sample_index, kb, fake_embedder)
    parts = Components.of(app)
    key = parts.keys.create("editor", "Redaktion Nord")[1]
    parts.callbacks.add(CallbackRequest("Erika Mustermann", "+49 30 1234567", "morning",
                                        "Mein Abschlag ist zu hoch.", "de",
                                        "search: Abschlag ändern"), now=CREATED)
    parts.callbacks.add(CallbackRequest("Jan Meier", "0171 2345678", "evening",
                                        "Router blinkt rot seit gestern.", "de",
                                        "article: router-stoerung"), now=CREATED + 3600)
    trained_versions(parts)
    with serving(app, "admin-server") as base:
        yield base, app, key


def trained_versions(parts: Components) -> None:
    """Store two trained weights versions with fixed names: one promoted, one rejected."""
    store = parts.service.weights
    saved = store.save(default_ranker(), "default", {})
    template = store.document(saved)
    for path in store.folder.glob(f"{saved}*"):
        path.unlink()
    versions = (("20261128T101500Z-3fa2c1", "2026-11-28T10:15:00+00:00", GOOD_CHECKS),
                ("20261129T081000Z-8b04d7", "2026-11-29T08:10:00+00:00", WORSE_CHECKS))
    for name, created, report in versions:
        document = {**template, "version": name, "created": created, "report": report}
        (store.folder / f"{name}.json").write_text(json.dumps(document), "utf-8")
    store.promote(versions[0][0], "promoted: not worse than the current version on any "
                                  "offline check")
    store.mark(versions[1][0], "rejected", "not promoted: worse than the current version on "
                                           "judged nDCG@10 (0.8870 < 0.9134)")


def screenshot(page: Any, name: str, full_page: bool = False) -> None:
    """Save the page (its visible part, or all of it) as <name>.png, its moments fixed."""
    assert SCREENSHOTS is not None, "the screenshot_folder fixture chooses the folder"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_load_state("networkidle")
    for selector, text in STEADY.items():
        texts = text if isinstance(text, list) else [text]
        page.evaluate("([s, t]) => document.querySelectorAll(s).forEach((e, i) => "
                      "{ e.textContent = t[Math.min(i, t.length - 1)]; })", [selector, texts])
    page.evaluate("document.fonts.ready.then(() => true)")
    picture = page.screenshot(animations="disabled", caret="hide", full_page=full_page)
    target = SCREENSHOTS / f"{name}.png"
    if not target.exists() or not looks_the_same(target.read_bytes(), picture):
        target.write_bytes(picture)


def log_in(page: Any, base: str, key: str) -> None:
    """Open the dashboard, get sent to the login form, and log in there."""
    page.goto(base + "/admin")
    page.wait_for_url(re.compile(r"/admin/login\?notice=login_needed$"))
    page.get_by_label("Editor API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/admin$"))


def test_logging_in_through_the_form(page, served):
    base, _, key = served
    page.goto(base + "/admin")
    page.wait_for_url(re.compile(r"/admin/login"))
    assert page.locator("h1").inner_text() == "Log in to the dashboard"
    screenshot(page, "admin-login")
    page.get_by_label("Editor API key").fill("kbs_00000000_wrong")
    page.get_by_role("button", name="Log in").click()
    problem = page.locator("#login-problem")
    assert "unknown API key" in problem.inner_text()
    assert page.get_by_label("Editor API key").get_attribute("aria-invalid") == "true"
    page.get_by_label("Editor API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/admin$"))
    assert page.locator("h1").inner_text() == "Dashboard"
    assert "Redaktion Nord" in page.locator("header .who").inner_text()
    cookies = {(c["name"], c["path"]): c for c in page.context.cookies()}
    session = cookies[("kbsearch_admin", "/admin")]
    assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # no script can read the session
    screenshot(page, "admin-dashboard", full_page=True)
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"notice=logged_out"))
    page.goto(base + "/admin")
    page.wait_for_url(re.compile(r"/admin/login"))


def test_the_report_draws_its_chart(page, served):
    base, app, key = served
    service = Components.of(app).service
    for n, query in enumerate(["Zählerstand melden", "Router blinkt rot", "WLAN langsam"] * 3):
        service.search(query, channel=("faq", "api", "faq")[n % 3], client=f"visitor-{n}")
    log_in(page, base, key)
    drawn = page.locator("#report figure.chart svg").first
    box = drawn.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 100
    assert page.locator("#report figure.chart svg").count() == 5
    bars = page.locator("#report figure.chart").first.locator("rect")
    assert bars.count() >= 2  # a column per channel of the day (and the background)
    assert max(bars.nth(i).bounding_box()["height"] for i in range(bars.count())) > 10
    assert page.locator("#report figcaption").first.inner_text().startswith("Searches per day")


def test_a_reindex_started_with_the_button(page, served):
    base, app, key = served
    index_dir = Components.of(app).settings.index
    before = current_version(index_dir)
    log_in(page, base, key)
    page.evaluate("window.notReloaded = true")
    button = page.get_by_role("button", name="Reindex the articles")
    button.scroll_into_view_if_needed()
    button.click()
    status = page.locator("#job-status")
    page.wait_for_function(
        "() => document.getElementById('reindex-job').dataset.state === 'succeeded'")
    assert page.evaluate("window.notReloaded") is True  # the script did it, no page load
    assert "finished at" in status.inner_text()
    after = current_version(index_dir)
    assert after != before and page.locator("#index-version").inner_text() == after
    assert page.locator("#index-articles").inner_text() == "5"
    assert page.locator("#job-progress").is_hidden()
    assert page.locator("#job-articles").inner_text() == "5"
    assert button.is_enabled()
    page.locator("#job-status").evaluate(
        "e => { e.textContent = 'Reindex 20261129T090000Z-7c1e2b finished at 2026-11-29 "
        "09:00:02 UTC: build 20261129T090000000000Z-5e2a91c4 is current.'; }")
    page.locator("#job-seconds").evaluate("e => { e.textContent = '0.4'; }")
    page.locator("#weights").scroll_into_view_if_needed()
    screenshot(page, "admin-reindex")


def test_without_javascript_the_button_posts_the_form(plain_page, served):
    page = plain_page
    base, app, key = served
    log_in(page, base, key)
    page.get_by_role("button", name="Reindex the articles").click()
    page.wait_for_url(re.compile(r"notice=reindex_started#reindex$"))
    assert "The reindex has started" in page.locator("#notice").inner_text()
    board = Components.of(app).reindex
    for _ in range(1200):  # a minute at most
        if not board.latest().active:
            break
        page.wait_for_timeout(50)
    page.reload()
    assert "finished at" in page.locator("#job-status").inner_text()
    page.get_by_role("button", name="Called back").first.click()
    page.wait_for_url(re.compile(r"notice=callback_done"))
    assert "is marked as called back" in page.locator("#notice").inner_text()
