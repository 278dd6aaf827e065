"""Hostile articles and queries (issue 13, point 5): inert in Chromium, plain text in the API.

A small knowledge base (five sample articles and two hostile ones) is indexed with the fake
embedder and served for real (``serving`` in conftest). Its hostile articles carry script
tags, event handlers, ``javascript:`` and ``data:`` links, SVG onload, ``<iframe srcdoc>``,
``<meta http-equiv=refresh>``, CSS ``expression`` and ``url(javascript:)``, entities that
decode to script, Markdown links and images with such addresses and a remote image; their
front matter carries what the validator accepts (text that tries to leave an attribute,
``javascript:`` as words) and refuses the rest (tests/test_articles.py). Hostile queries are
searched on the FAQ pages and logged, so the dashboard shows them too.

Every payload would set ``window.__pwned`` or open a dialog. Headless Chromium visits every
HTML page (FAQ home, results, fragment, topics, articles, votes, callback form, its
confirmation and errors, error pages; the dashboard's login and, logged in as an editor,
the dashboard) and checks that no dialog opened, ``window.__pwned`` stays undefined, no
injected element or attribute is live in the document, no Content-Security-Policy violation
was reported (the markup is inert by itself, not only blocked), and no request left
127.0.0.1 (the remote image is dropped). The API test checks that the text fields of
search, article, bot and assist answers are plain text and ``html`` is sanitised.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from kbsearch.api import create_app
from kbsearch.http.context import Components
from kbsearch.index.builds import build_index
from kbsearch.service import SearchService
from kbsearch.stores.callbacks import CallbackRequest

from .conftest import ARTICLES, make_settings, serving
from .test_admin import KB_FILES
from .test_admin_browser import log_in

PWN = "window.__pwned=1"
SVG_SCRIPT = "PHN2ZyBvbmxvYWQ9IndpbmRvdy5fX3B3bmVkPTEiLz4="  # <svg onload="window.__pwned=1"/>
HOSTILE_BODY = f"""# Zählerstand melden trotz Störung

Zählerstand melden: <script>{PWN}; alert("Zählerstand melden jetzt")</script> Sie melden den
Zählerstand im Kundenportal unter „Zählerstand melden“.

Bilder: <img src=x onerror="{PWN}"> <svg onload="{PWN}"><circle r="1"/></svg>

Körper: <body onload="{PWN}"> <span onmouseover="{PWN}">Zählerstand hier</span>

Links: <a href="javascript:{PWN}">Zählerstand im Portal</a>, [Markdown-Link](javascript:{PWN}),
[Daten-Link](data:text/html,<script>{PWN}</script>), ![Bild](javascript:{PWN}),
![SVG](data:image/svg+xml;base64,{SVG_SCRIPT}), <a href="&#106;avascript:{PWN}">Entität</a>.

Rahmen: <iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>
<meta http-equiv="refresh" content="0;url=javascript:{PWN}">
<object data="javascript:{PWN}"></object> <embed src="javascript:{PWN}">

Stil: <span style="background:url(javascript:{PWN}); width: expression({PWN})">CSS</span>
<style>body {{ background: url("javascript:{PWN}") }}</style>

Formular: <form action="javascript:{PWN}"><button formaction="javascript:{PWN}">Los</button></form>

Entitäten: &lt;script&gt;{PWN}&lt;/script&gt; &#x3C;img src=x onerror={PWN}&#x3E;

## Ablesen

Der Zähler zeigt den Stand. ![Zähler](https://tracker.example/pixel.gif)

Zuletzt: <math><mtext><table><mglyph><style><img src=x onerror="{PWN}">
"""
ACCEPTED_FRONT_MATTER = ['" onmouseover="window.__pwned=1', f"javascript:{PWN}"]
HOSTILE_ARTICLES = {
    "hostile/zaehlerstand-stoerung.md": f"""---
id: zaehlerstand-stoerung
title: "Zählerstand melden trotz Störung: \\" onmouseover=\\"{PWN} & javascript:{PWN}"
language: de
category: zaehler
tags: [zählerstand, '{ACCEPTED_FRONT_MATTER[0]}', '{ACCEPTED_FRONT_MATTER[1]}']
questions:
  - 'Zählerstand melden {ACCEPTED_FRONT_MATTER[0]}'
  - '{ACCEPTED_FRONT_MATTER[1]}'
---
{HOSTILE_BODY}""",
    "hostile/router-hostile-en.md": f"""---
id: router-hostile-en
title: Router blinks red '" onmouseover="{PWN}
language: en
category: '" onmouseover="{PWN} javascript:{PWN}'
tags: [router]
---
# Router blinks red

The router blinks red. <img src=x onerror="{PWN}"> [Restart](javascript:{PWN}) it.
<svg><script>{PWN}</script></svg> <a href="data:text/html;base64,{SVG_SCRIPT}">data</a>
""",
}
HOSTILE_QUERIES = (
    f"<script>{PWN}</script> Zählerstand melden",
    f'"><img src=x onerror="{PWN}"> Zählerstand',
    f"javascript:{PWN}",
    "<svg onload=alert(1)> Router blinks red",
    "&lt;script&gt;alert(1)&lt;/script&gt; Zähler",
    "Zähler\x00<iframe srcdoc='<script>parent.__pwned=1</script>'>",
    f"</title></textarea><meta http-equiv=refresh content='0;url=javascript:{PWN}'>",
)
# What counts as an injected element or attribute that is live in the page.
INJECTED = """() => {
  const found = [];
  const bad = v => {
    try { return ['javascript:', 'vbscript:', 'data:'].includes(new URL(v, location).protocol); }
    catch (error) { return false; }  // no address at all (srcset lists)
  };
  for (const e of document.querySelectorAll('*')) {
    const tag = e.tagName.toLowerCase();
    if (['iframe', 'frame', 'object', 'embed', 'base', 'applet', 'style'].includes(tag)
        || (tag === 'meta' && e.hasAttribute('http-equiv'))
        || (tag === 'script' && (!e.src || new URL(e.src).origin !== location.origin))) {
      found.push(tag);
    }
    for (const a of e.attributes) {
      const name = a.name.toLowerCase();
      if (name.startsWith('on') || name === 'style' || name === 'srcdoc'
          || (['href', 'src', 'action', 'formaction', 'data', 'xlink:href', 'srcset',
               'poster', 'background'].includes(name) && bad(a.value))) {
        found.push(tag + '[' + name + '=' + a.value + ']');
      }
    }
  }
  return found;
}"""

def hostile_kb(folder: Path) -> Path:
    """Write the knowledge base: five sample articles and the hostile ones."""
    kb = folder / "articles"
    for name in KB_FILES:
        (kb / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ARTICLES / name, kb / name)
    for name, text in HOSTILE_ARTICLES.items():
        (kb / name).parent.mkdir(parents=True, exist_ok=True)
        (kb / name).write_text(text, "utf-8")
    return kb


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, fake_embedder) -> Iterator[dict[str, Any]]:
    """The hostile knowledge base indexed and served; yields address, app and keys."""
    folder = tmp_path_factory.mktemp("hostile")
    kb = hostile_kb(folder)
    report = build_index(kb, folder / "index", fake_embedder)
    assert not report.errors, report.errors  # every hostile article was accepted
    settings = make_settings(folder / "data", index=folder / "index", articles=kb)
    service = SearchService(settings, embedder=fake_embedder)
    app = create_app({"TESTING": True}, search_service=service)
    parts = Components.of(app)
    keys = {role: parts.keys.create(role, f"{role} {PWN}")[1]
            for role in ("editor", "agent", "bot")}
    for n, query in enumerate(HOSTILE_QUERIES * 3):  # the dashboard's top queries and gaps
        service.search(query, channel="faq", client=f"visitor-{n % 5}")
    parts.callbacks.add(CallbackRequest(
        f"<script>{PWN}</script>", "+49 30 1234567", "morning",
        f'<img src=x onerror="{PWN}"> Zählerstand', "de", f"search: <svg onload={PWN}>"))
    with serving(app, "hostile-server") as base:
        yield {"base": base, "app": app, "keys": keys}


class Watch:
    """What a tab did that it must not: dialogs, CSP reports, requests to other hosts."""

    def __init__(self, page: Any, base: str) -> None:
        """Listen to the tab's dialogs, console messages and requests."""
        self.dialogs: list[str] = []
        self.csp: list[str] = []
        self.elsewhere: list[str] = []
        self.pages = 0

        def dialog(d: Any) -> None:
            self.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", dialog)
        page.on("console", lambda m: self.csp.append(m.text)
                if "Content Security Policy" in m.text else None)
        page.on("request", lambda r: self.elsewhere.append(r.url)
                if r.url.startswith(("http:", "https:")) and not r.url.startswith(base)
                else None)

    def check(self, page: Any, what: str) -> None:
        """Assert that the page is inert: nothing ran, nothing injected is live."""
        page.wait_for_load_state("load")
        page.evaluate("""() => document.querySelectorAll('*').forEach(e => {
            e.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
            e.dispatchEvent(new Event('load')); e.dispatchEvent(new Event('error')); })""")
        assert page.evaluate("typeof window.__pwned") == "undefined", what
        assert page.evaluate(INJECTED) == [], what
        assert (self.dialogs, self.csp, self.elsewhere) == ([], [], []), what
        self.pages += 1


@pytest.mark.slow
def test_faq_pages_keep_hostile_articles_and_queries_inert(page, hostile):
    base = hostile["base"]
    watch = Watch(page, base)

    def visit(path: str, status: int = 200) -> Any:
        response = page.goto(base + path)
        assert response.status == status, path
        watch.check(page, path)
        return response

    visit("/")
    visit("/?ui=en")
    for query in HOSTILE_QUERIES:
        visit("/?q=" + quote(query))
        if "\x00" not in query:  # shown as typed, as text
            assert page.locator("#q").input_value() == query
        visit("/suche/fragment?q=" + quote(query))
        visit("/rueckruf?q=" + quote(query))
    visit("/?q=" + quote("Zählerstand melden Störung"))
    link = page.locator("#results .result h3 a", has_text="trotz Störung").first
    assert '" onmouseover="' in link.inner_text()  # the title is shown as written
    link.click()  # the article opened from a search: back link, click recorded
    page.wait_for_url(re.compile(r"/articles/zaehlerstand-stoerung\?s="))
    watch.check(page, "article from a search")
    assert page.locator("article h1").inner_text().startswith("Zählerstand melden trotz")
    assert page.locator("article img[alt='Zähler']").get_attribute("src") is None
    page.locator("button[value=not_helpful]").click()
    page.wait_for_load_state("networkidle")
    watch.check(page, "not helpful, with alternatives")
    page.goto(base + "/")
    page.click("#q")
    page.keyboard.type("Zählerstand <img src=x onerror=alert(1)>", delay=20)
    page.wait_for_function("() => document.querySelector('#results .result')")
    watch.check(page, "results as you type")
    for article_id in ("zaehlerstand-stoerung", "router-hostile-en"):
        visit(f"/articles/{article_id}")
        visit(f"/articles/{article_id}?ui=en")
        visit(f"/rueckruf?article={article_id}")
    visit("/themen/zaehler")
    visit("/themen/" + quote(f'" onmouseover="{PWN} javascript:{PWN}', safe=""))
    visit("/articles/" + quote(f"<script>{PWN}</script>"), 404)
    visit(f"/nirgends/<svg onload={PWN}>", 404)
    visit("/rueckruf/danke?nr=" + quote(f"<script>{PWN}</script>"))  # back to the form
    callback_form_with_hostile_fields(page, base, watch)
    assert watch.pages >= 40


def callback_form_with_hostile_fields(page: Any, base: str, watch: Watch) -> None:
    """Send the callback form with hostile fields: refused once (shown again), then stored."""
    page.goto(base + "/rueckruf")
    page.fill("#name", f"<script>{PWN}</script>")
    page.fill("#phone", f"<img src=x onerror={PWN}>")
    page.fill("#description", f"</textarea><svg onload={PWN}> Zählerstand")
    page.locator("form button[type=submit]").last.click()
    page.wait_for_load_state("load")
    watch.check(page, "callback form with errors")
    assert page.locator("#name").input_value() == f"<script>{PWN}</script>"
    page.fill("#phone", "+49 30 1234567")
    page.select_option("#preferred_time", "morning")
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(re.compile(r"/rueckruf/danke\?nr="))
    watch.check(page, "callback confirmation")


@pytest.mark.slow
def test_the_dashboard_keeps_hostile_articles_queries_and_callbacks_inert(page, hostile):
    base = hostile["base"]
    watch = Watch(page, base)
    page.goto(base + "/admin/login?notice=" + quote(f"<script>{PWN}</script>"))
    watch.check(page, "login")
    page.get_by_label("Editor API key").fill(f'"><img src=x onerror="{PWN}">')
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state("load")
    watch.check(page, "login refused")
    log_in(page, base, hostile["keys"]["editor"])
    watch.check(page, "dashboard")
    text = page.locator("body").inner_text()
    assert f"<script>{PWN}</script>" in text  # the callback's name, shown as text
    shown = [query for query in HOSTILE_QUERIES if query in text]
    assert shown, text  # the report's queries
    for notice in (f"<script>{PWN}</script>", "reindex_started"):
        page.goto(base + "/admin?notice=" + quote(notice))
        watch.check(page, f"dashboard notice {notice}")
    page.goto(base + "/admin/nirgends")
    watch.check(page, "dashboard 404")
    assert watch.pages == 6


def plain_text_problems(where: str, text: str) -> list[str]:
    """Return why a text field is not plain text: markup, script text, addresses, entities."""
    found = re.findall(r"<[a-zA-Z/!?]|&[#a-zA-Z0-9]+;|__pwned|javascript:|onerror|alert\(|"
                       r"tracker\.example", text)
    return [f"{where}: {marker!r} in {text!r}" for marker in found]


def html_problems(html: str) -> list[str]:
    """Return what the sanitised HTML of an article still holds that may run or leak."""
    found = re.findall(r"(?i)<(?:script|iframe|object|embed|meta|style|svg|math|form|base)\b|"
                       r"<[^>]*\s(?:on\w+|style|srcdoc)\s*=|<[^>]*(?:javascript|data):|"
                       r"tracker\.example",
                       html)
    return [f"html: {marker!r}" for marker in found]


def test_api_text_fields_are_plain_text_and_html_is_sanitised(hostile):
    client = hostile["app"].test_client()
    keys = hostile["keys"]
    problems: list[str] = []
    for query in ("Zählerstand melden Störung", "Router blinks red", *HOSTILE_QUERIES):
        answer = client.get("/api/v1/search", query_string={"q": query, "k": 10}).get_json()
        assert "\x00" not in answer["query"]
        for result in answer["results"]:
            problems += plain_text_problems("search snippet", result["snippet"])
        assert answer["results"], query
    found = client.get("/api/v1/search?q=Zählerstand+melden+Störung").get_json()["results"]
    hostile_hit = next(r for r in found if r["id"] == "zaehlerstand-stoerung")
    assert "Zählerstand" in hostile_hit["snippet"]
    for article_id in ("zaehlerstand-stoerung", "router-hostile-en"):
        article = client.get(f"/api/v1/articles/{article_id}").get_json()
        problems += html_problems(article["html"])
        assert "Zählerstand" in article["html"] or "router" in article["html"]
    bearer = {"Authorization": f"Bearer {keys['bot']}"}
    turn = client.post("/api/v1/bot/turn", headers=bearer, json={
        "conversation_id": "hostile-1", "message": "Zählerstand melden trotz Störung"})
    assert turn.status_code == 200
    offers = [turn.get_json()["article"], *turn.get_json()["alternatives"]]
    assert "zaehlerstand-stoerung" in [o["id"] for o in offers]
    for offer in offers:
        problems += plain_text_problems("bot short_answer", offer["short_answer"])
    assist = client.post("/api/v1/assist", headers={"Authorization": f"Bearer {keys['agent']}"},
                         json={"text": "Hallo, ich will meinen Zählerstand melden, aber das "
                                       "Portal hat eine Störung. Wie geht das?"})
    assert assist.status_code == 200
    for result in assist.get_json()["results"]:
        problems += plain_text_problems("assist snippet", result["snippet"])
        for sentence in result["matched_sentences"]:
            problems += plain_text_problems("assist sentence", sentence["text"])
    assert problems == []
