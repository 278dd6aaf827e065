"""The customers' self-service FAQ pages, server-rendered, in German and English.

Routes (blueprint ``web``)::

    GET  /                          search box, results for ?q=, topics
    GET  /suche/fragment?q=         the results alone, for search as you type
    GET  /themen/<category>         the articles of one topic
    GET  /articles/<id>[?s=&p=]     an article; with a search context a click is recorded
    POST /articles/<id>/vote        "did this help?" (vote=helpful|not_helpful)
    GET  /rueckruf                  the callback form; POST stores the request
    GET  /rueckruf/danke?nr=        the confirmation

Every page works without JavaScript; ``static/faq.js`` adds results as you type and sends
votes without reloading. ``?ui=en`` (or ``de``) switches the interface language and is
remembered in a cookie. Only public, published articles are ever shown: every lookup goes
through the service without a caller, which means public visibility.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from kbsearch.channels.faq import (
    VOTE_EVENTS,
    SearchContext,
    VoteOutcome,
    parse_context,
    record_click,
    record_vote,
)
from kbsearch.content.articles import Article
from kbsearch.content.markdown import render_markdown
from kbsearch.content.snippets import teaser
from kbsearch.errors import (
    ArticleNotFoundError,
    CallbackError,
    CallbackStoreError,
    FeedbackStoreError,
    IndexNotFoundError,
    ModelError,
    QueryError,
    SearchTimeoutError,
)
from kbsearch.http.context import callback_store, client_identity, service
from kbsearch.http.web import display
from kbsearch.http.web.errors import register_error_pages
from kbsearch.http.web.texts import DEFAULT_UI, UI_LANGUAGES, category_name, texts
from kbsearch.index.deadline import Deadline
from kbsearch.service import SearchResponse
from kbsearch.stores.callbacks import (
    DESCRIPTION_MAX,
    NAME_MAX,
    REFERENCE,
    TIME_SLOTS,
    parse_callback,
)

log = logging.getLogger(__name__)
web = Blueprint("web", __name__)
register_error_pages(web)

UI_COOKIE = "faq_ui"
VOTES_COOKIE = "faq_votes"
VOTES_REMEMBERED = 20
COOKIE_SECONDS = 365 * 24 * 3600
LIVE_MIN_CHARS = 3
ALTERNATIVES = 5
FORM_MAX_BYTES = 4096
CONTEXT_QUERY_CHARS = 200
REMEMBERED_VOTE = re.compile(r"([a-z0-9-]+):([0-9a-f]{32}):([0-9a-f]{32})")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: https:; style-src 'self'; "
        "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class Listing:
    """The answer to one search on the FAQ page: results or a problem to show.

    ``status`` is the HTTP status of the page: 200, 400 for a bad query, 503 when search
    is unavailable.
    """

    query: str
    response: SearchResponse | None
    problem: str | None
    human_first: bool
    status: int = 200


@dataclass(frozen=True)
class Topic:
    """A category with the articles shown for it in the interface language."""

    key: str
    name: str
    articles: tuple[Article, ...]


def ui() -> str:
    """Return the interface language of this request (de or en).

    Also for errors raised before the blueprint's own hooks ran (a rate limit).
    """
    if "ui" not in g:
        choose_language()
    return g.ui


@web.before_request
def choose_language() -> None:
    """Take the interface language from ?ui=, else the cookie, else German."""
    asked = request.args.get("ui")
    remembered = request.cookies.get(UI_COOKIE)
    g.ui = next((x for x in (asked, remembered) if x in UI_LANGUAGES), DEFAULT_UI)


@web.after_request
def finish(response: Response) -> Response:
    """Remember a language chosen with ?ui= and add the pages' security headers."""
    if request.args.get("ui") in UI_LANGUAGES:
        response.set_cookie(UI_COOKIE, request.args["ui"], max_age=COOKIE_SECONDS,
                            samesite="Lax", httponly=True)
    response.vary.add("Cookie")
    return response


@web.app_context_processor
def page_globals() -> dict[str, Any]:
    """Give every template its texts, language, contact details and helpers."""
    settings = service().settings
    language = ui()
    return {
        "t": texts(language),
        "ui": language,
        "phone": settings.faq_phone,
        "tel": display.tel_href(settings.faq_phone),
        "chat_url": settings.faq_chat_url,
        "callback_url": url_for("web.callback_form"),
        "switch_url": switch_url(),
        "human_first": False,
        "category_name": lambda key: category_name(key, language),
        "level": display.probability_level,
        "highlight": display.highlight,
        "date": lambda day: display.format_date(day, language),
    }


def switch_url() -> str:
    """Return this page's address in the other interface language."""
    other = "en" if ui() == "de" else "de"
    if request.method == "GET" and request.endpoint and request.endpoint != "web.fragment":
        # url_for reads arguments starting with "_" itself (_external, _anchor, ...)
        values: dict[str, Any] = {k: v for k, v in request.args.items()
                                  if not k.startswith("_")}
        values.update(request.view_args or {})
        values["ui"] = other
        return url_for(request.endpoint, **values)
    return url_for("web.home", ui=other)


# Searching


def search_listing(raw: str) -> Listing:
    """Search for a query in the interface language; a bad query becomes a problem to show."""
    t = texts(ui())
    query = " ".join(raw.split())
    limit = service().settings.max_query_chars
    if not query:
        return Listing(query, None, t["query_empty"], False, 400)
    if len(query) > limit:
        return Listing(query, None, t["query_too_long"].format(limit=limit), False, 400)
    try:
        response = search_in_language(query)
    except QueryError as exc:
        return Listing(query, None, str(exc), False, 400)
    except (IndexNotFoundError, ModelError, SearchTimeoutError) as exc:
        log.error("FAQ search unavailable: %s", exc)
        return Listing(query, None, t["search_unavailable"], True, 503)
    probabilities = [r.hit.probability for r in response.results]
    threshold = service().settings.faq_handoff_below
    return Listing(query, response, None, display.human_first(probabilities, threshold))


def search_in_language(query: str) -> SearchResponse:
    """Search the articles in the interface language, unless the best answer has none there.

    The query is first ranked over all languages without logging. When its best article
    is in the interface language or has a translation in it, the interface language's
    articles are searched (language filter); otherwise (the best answer exists only in the
    other language) all languages are. Only the search that is shown is logged; when the
    interface language has no articles at all, all languages are searched.
    """
    svc = service()
    settings = svc.settings
    params: dict[str, Any] = {"channel": "faq", "client": client_identity(),
                              "k": settings.faq_results,  # one time limit for all three
                              "deadline": Deadline.start(settings.search_time_limit)}
    if ui() not in settings.languages:
        return svc.search(query, **params)
    judge = svc.search(query, log=False, **params)
    if judge.results:
        best = judge.results[0].article
        in_ui = best.language == ui() or any(
            a.language == ui() for a in display.translations(best, svc.articles())
        )
        if not in_ui:
            return svc.search(query, **params)
    preferred = svc.search(query, language=ui(), **params)
    return preferred if preferred.results else svc.search(query, **params)


def count_text(listing: Listing | None) -> str:
    """Return the sentence that announces how many articles were found."""
    if listing is None or listing.response is None:
        return listing.problem if listing and listing.problem else ""
    t = texts(ui())
    count = len(listing.response.results)
    if count == 0:
        return t["count_none"]
    return t["count_one"] if count == 1 else t["count_many"].format(count=count)


def topics() -> list[Topic]:
    """Return the categories, by name, with their articles in the interface language.

    Articles without a translation into the interface language are listed after the others.
    """
    language = ui()
    grouped: dict[str, list[Article]] = {}
    for article in display.for_language(service().articles(), language):
        grouped.setdefault(article.category, []).append(article)
    found = [Topic(key, category_name(key, language),
                   tuple(sorted(items, key=lambda a: (a.language != language, a.title.lower()))))
             for key, items in grouped.items()]
    return sorted(found, key=lambda topic: topic.name.lower())


@web.get("/")
def home() -> Any:
    """Show the search box, the results for ?q= and the topics."""
    query = request.args.get("q")
    listing = search_listing(query) if query is not None else None
    return render_template(
        "index.html", listing=listing, query=query or "", status_text=count_text(listing),
        topics=topics(), panel_id="kontakt", live_min_chars=LIVE_MIN_CHARS,
        max_query_chars=service().settings.max_query_chars,
        human_first=bool(listing and listing.human_first),
        callback_url=callback_link(query=listing.query if listing else None),
    ), listing.status if listing else 200


@web.get("/suche/fragment")
def fragment() -> Any:
    """Return the results for ?q= alone (for search as you type), without the page around."""
    listing = search_listing(request.args.get("q", ""))
    return render_template(
        "_results.html", listing=listing, status_text=count_text(listing),
        panel_id="kontakt-suche", callback_url=callback_link(query=listing.query),
    ), listing.status


# Browsing and reading


@web.get("/themen/<category>")
def category_page(category: str) -> Any:
    """Show the articles of one topic; 404 for a topic without public articles."""
    topic = next((t for t in topics() if t.key == category), None)
    if topic is None:
        abort(404)
    return render_template("category.html", topic=topic,
                           teaser=lambda article: teaser(service().article(article.id)))


@web.get("/articles/<article_id>")
def article_page(article_id: str) -> Any:
    """Show a public article; opened from a search (?s=&p=), record the click."""
    article = service().article(article_id)
    context = parse_context(request.args.get("s"), request.args.get("p"),
                            request.args.get("t"), service().settings.max_k)
    if context is not None:
        context = record_click(service(), article, context, client_identity())
    return render_article(article, context)


@web.get("/articles/<article_id>/vote")
def vote_page(article_id: str) -> Any:
    """Send someone who opens the vote address to the article itself."""
    return redirect(url_for("web.article_page", article_id=article_id))


@web.post("/articles/<article_id>/vote")
def vote(article_id: str) -> Any:
    """Store a "did this help?" answer; answer "no" with alternatives and the way to a human.

    With partial=1 (sent by the page's script) only the outcome is returned.
    """
    request.max_content_length = FORM_MAX_BYTES
    article = service().article(article_id)
    context = parse_context(request.form.get("s"), request.form.get("p"),
                            request.form.get("t"), service().settings.max_k)
    partial = request.form.get("partial") == "1"
    event = request.form.get("vote", "")
    if event not in VOTE_EVENTS:
        problem = texts(ui())["vote_invalid"]
        if partial:
            return render_template("_vote_outcome.html", outcome=None, problem=problem,
                                   panel_id="kontakt-artikel"), 400
        return render_article(article, context, problem=problem, status=400)
    remembered = remembered_votes().get(article.id)
    outcome = record_vote(service(), article, event, client_identity(), context,
                          remembered, ALTERNATIVES)
    status = 503 if outcome.status == "failed" else 200
    if partial:
        body = render_template("_vote_outcome.html", outcome=outcome, problem=None,
                               article=article, panel_id="kontakt-artikel",
                               callback_url=callback_link(article=article))
        response = make_response(body, status)
    else:
        response = make_response(render_article(article, context, outcome=outcome,
                                                status=status))
    if outcome.search_id and outcome.token:
        attached = SearchContext(outcome.search_id, token=outcome.token)
        response.set_cookie(VOTES_COOKIE, remember_vote(article.id, attached),
                            max_age=COOKIE_SECONDS, samesite="Lax", httponly=True)
    return response


def remembered_votes() -> dict[str, SearchContext]:
    """Return, per article, the search (with its token) an earlier vote was attached to."""
    raw = request.cookies.get(VOTES_COOKIE, "")
    return {m.group(1): SearchContext(m.group(2), token=m.group(3))
            for m in map(REMEMBERED_VOTE.fullmatch, raw.split("|")) if m}


def remember_vote(article_id: str, attached: SearchContext) -> str:
    """Return the votes cookie with this vote added (the newest few are kept)."""
    votes = remembered_votes()
    votes.pop(article_id, None)
    votes[article_id] = attached
    kept = list(votes.items())[-VOTES_REMEMBERED:]
    return "|".join(f"{article}:{c.search_id}:{c.token}" for article, c in kept)


def render_article(
    article: Article, context: SearchContext | None, outcome: VoteOutcome | None = None,
    problem: str | None = None, status: int = 200,
) -> tuple[str, int]:
    """Render an article page, with the outcome of a vote on top when there is one."""
    everything = service().articles()
    by_id = {a.id: a for a in everything}
    twins = display.translations(article, everything)
    return render_template(
        "article.html", article=article,
        html=render_markdown(article.body, service().settings.remote_images == "keep"),
        context=context, back_query=search_query(context), outcome=outcome, problem=problem,
        translation=next((a for a in twins if a.language != article.language), None),
        related=[by_id[i] for i in article.related if i in by_id],
        human_first=bool(outcome and outcome.event == "not_helpful"),
        panel_id="kontakt", callback_url=callback_link(article=article),
        switch_url=url_for("web.article_page", article_id=article.id,
                           ui="en" if ui() == "de" else "de"),
    ), status


def search_query(context: SearchContext | None) -> str | None:
    """Return the query of the search a page was opened from (None if unknown)."""
    if context is None:
        return None
    try:
        logged = service().feedback.get_search(context.search_id)
    except FeedbackStoreError:
        return None
    return logged.query if logged is not None else None


# The way to a human


def callback_link(query: str | None = None, article: Article | None = None) -> str:
    """Return the callback form's address, telling it what the customer was looking at."""
    if article is not None:
        return url_for("web.callback_form", article=article.id)
    if query:
        return url_for("web.callback_form", q=query[:CONTEXT_QUERY_CHARS])
    return url_for("web.callback_form")


def callback_context(args: Any) -> tuple[str, str]:
    """Return (context for the agent, description to start with) from ?q= or ?article=."""
    article_id = args.get("article", "")
    if article_id:
        try:
            article = service().article(article_id)
        except ArticleNotFoundError:
            return "", ""
        return f"article: {article.id}", ""
    query = " ".join(args.get("q", "").split())[:CONTEXT_QUERY_CHARS]
    return (f"search: {query}", query) if query else ("", "")


def render_callback(
    values: dict[str, str], problems: dict[str, str] | None = None, failed: bool = False,
    status: int = 200,
) -> tuple[str, int]:
    """Render the callback form with the values typed and a message per bad field."""
    t = texts(ui())
    limits = {"name": NAME_MAX, "description": DESCRIPTION_MAX}
    messages = {
        field: t[f"error_{field}_{code}"].format(limit=limits.get(field, 0))
        for field, code in (problems or {}).items()
    }
    return render_template(
        "callback.html", values=values, errors=messages, failed=failed, slots=TIME_SLOTS,
        description_max=DESCRIPTION_MAX, name_max=NAME_MAX,
    ), status


@web.get("/rueckruf")
def callback_form() -> Any:
    """Show the callback form, started from the search or article the customer came from."""
    context, description = callback_context(request.args)
    return render_callback({"context": context, "description": description})


@web.post("/rueckruf")
def callback_submit() -> Any:
    """Store a callback request and confirm it; show every bad field with its message."""
    request.max_content_length = FORM_MAX_BYTES
    fields = {name: request.form.get(name, "") for name in
              ("name", "phone", "preferred_time", "description", "context")}
    try:
        callback = parse_callback(fields, ui(), fields["context"])
    except CallbackError as exc:
        return render_callback(fields, exc.problems, status=400)
    redact = service().redactor.redact  # the free text only: name and phone are the point
    callback = dataclasses.replace(callback, description=redact(callback.description),
                                   context=redact(callback.context))
    try:
        stored = callback_store().add(callback)
    except CallbackStoreError as exc:
        log.error("callback request not stored: %s", exc)
        return render_callback(fields, failed=True, status=503)
    return redirect(url_for("web.callback_done", nr=stored.reference,
                            zeit=callback.preferred_time), code=303)


@web.get("/rueckruf/danke")
def callback_done() -> Any:
    """Confirm a callback request with its reference (nothing else is read back)."""
    reference = request.args.get("nr", "")
    slot = request.args.get("zeit", "")
    if not REFERENCE.fullmatch(reference):
        return redirect(url_for("web.callback_form"))
    return render_template("callback_done.html", reference=reference,
                           slot=slot if slot in TIME_SLOTS else None)
