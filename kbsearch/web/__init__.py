"""The self-service FAQ pages: search, category browsing and article pages (server-rendered)."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from flask import Blueprint, current_app, render_template, request

from kbsearch.api import client_identity
from kbsearch.errors import QueryError

web = Blueprint("web", __name__)

CATEGORY_NAMES = {
    "zaehler": "Zähler & Ablesung", "umzug": "Umzug", "tarife": "Tarife",
    "rechnung": "Rechnung & Abschlag", "zahlung": "Zahlung", "vertrag": "Vertrag & Kündigung",
    "internet": "Internet & Router", "mobilfunk": "Mobilfunk", "konto": "Kundenkonto",
    "solar-emobilitaet": "Solar & E-Mobilität", "service": "Service & Kontakt",
}


def probability_words(probability: float) -> str:
    """Say a solution probability in plain German words."""
    if probability >= 0.8:
        return "passt sehr wahrscheinlich"
    if probability >= 0.5:
        return "passt wahrscheinlich"
    if probability >= 0.25:
        return "könnte passen"
    return "passt eher nicht"


@web.get("/")
def home() -> Any:
    """Show the search box, results for ?q= and the categories."""
    service = current_app.extensions["kbsearch"]
    query = request.args.get("q", "").strip()
    response, problem = None, None
    if query:
        try:
            response = service.search(query, channel="faq", client=client_identity(), k=10,
                                      language=request.args.get("lang") or None)
        except QueryError as exc:
            problem = str(exc)
    articles = service.articles()
    categories = [
        (key, CATEGORY_NAMES.get(key, key), list(group))
        for key, group in groupby(articles, key=lambda a: a.category)
    ]
    best = response.results[0].hit.probability if response and response.results else 0.0
    return render_template(
        "index.html", query=query, response=response, problem=problem,
        categories=categories, words=probability_words, low_confidence=bool(query) and best < 0.5,
    )


@web.get("/articles/<article_id>")
def article_page(article_id: str) -> Any:
    """Show one public article rendered from Markdown."""
    from kbsearch.api import render_markdown

    article = current_app.extensions["kbsearch"].article(article_id)
    return render_template(
        "article.html", article=article, html=render_markdown(article.body),
        category=CATEGORY_NAMES.get(article.category, article.category),
    )
