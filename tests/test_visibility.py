"""Who may see which article: the one rule, table-driven over roles, audiences and statuses."""

from dataclasses import dataclass

import pytest

from kbsearch.content.visibility import ROLES, Caller, may_see, visibility_of
from kbsearch.errors import ArticleNotFoundError


@dataclass(frozen=True)
class Doc:
    audience: str
    status: str


# (role, audience, status) -> may see; None is the public (no API key)
TABLE = [
    (role, audience, status, status == "published" and (
        audience == "public" or role in ("agent", "editor")))
    for role in (None, *ROLES)
    for audience in ("public", "internal")
    for status in ("published", "draft", "archived")
]


@pytest.mark.parametrize(("role", "audience", "status", "expected"), TABLE)
def test_who_may_see_which_article(role, audience, status, expected):
    assert may_see(Doc(audience, status), Caller(role).visibility) is expected


def test_only_agents_and_editors_see_internal_articles():
    assert [visibility_of(r) for r in (None, "bot", "agent", "editor", "unknown")] == [
        "public", "public", "internal", "internal", "public"]


def test_an_unknown_visibility_level_widens_nothing():
    with pytest.raises(ValueError, match="unknown visibility"):
        may_see(Doc("public", "published"), "everything")


@pytest.mark.parametrize("role", [None, *ROLES])
def test_the_service_lists_and_opens_exactly_what_the_rule_allows(sample_service, role):
    caller = Caller(role)
    everything = sample_service.index().articles
    allowed = {a.id for a in everything if may_see(a, caller.visibility)}
    assert {a.id for a in sample_service.articles(caller=caller)} == allowed
    for article in everything:
        if article.id in allowed:
            assert sample_service.article(article.id, caller=caller).id == article.id
        else:
            with pytest.raises(ArticleNotFoundError, match=article.id):
                sample_service.article(article.id, caller=caller)
    shown = {r.article.id for query in ("Kulanz Gutschrift", "Zählerstand", "Router")
             for r in sample_service.search(query, caller=caller, k=20, log=False).results}
    assert shown <= allowed
