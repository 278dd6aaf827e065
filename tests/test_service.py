import pytest

from kbsearch.content.snippets import make_snippet
from kbsearch.content.visibility import may_see
from kbsearch.errors import ArticleNotFoundError, QueryError


def ids(response):
    return [r.article.id for r in response.results]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Wie melde ich meinen Zählerstand?", "zaehlerstand-melden"),
        ("zaehlerstand melden", "zaehlerstand-melden"),
        ("Internet geht nicht, Router blinkt rot", "router-stoerung"),
        ("Nummer zu NordWerk mitnehmen", "rufnummernmitnahme"),
        ("monatliche Rate ändern", "abschlag-anpassen"),
        ("How do I submit my meter reading?", "zaehlerstand-melden-en"),
        ("pay by bank transfer without credit card", "zahlung-ueberweisung-en"),
    ],
)
def test_finds_the_right_article_first(model_service, query, expected):
    response = model_service.search(query, k=5)
    assert ids(response)[0] == expected
    probabilities = [r.hit.probability for r in response.results]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probabilities)


def test_compound_part_finds_the_compound_in_keyword_mode(sample_service):
    response = sample_service.search("Zähler", k=10, mode="keyword")
    assert "zaehlerstand-melden" in ids(response)
    assert "zaehlernummer-finden" in ids(response)


def test_public_search_never_returns_internal_drafts_or_archived(sample_service):
    index = sample_service.index()
    hidden = {a.id for a in index.articles if not may_see(a, "public")}
    assert len(hidden) >= 10
    for query in ("Kulanzgutschrift Regeln", "Eskalation 2nd Level", "dynamischer Stromtarif",
                  "ISDN Abschaltung", "Sperrandrohung Härtefall"):
        assert not set(ids(sample_service.search(query, k=20))) & hidden, query


def test_internal_visibility_includes_internal_articles(sample_service):
    response = sample_service.search("Wie viel Kulanz darf ich gutschreiben?", k=3,
                                     visibility="internal")
    assert ids(response)[0] in {"kulanz-gutschrift-regeln", "kulanz-gutschrift-regeln-en"}


def test_filters_language_category_and_tags(sample_service):
    english = sample_service.search("Zählerstand", k=10, language="en")
    assert english.results and all(r.article.language == "en" for r in english.results)
    category = sample_service.search("kündigen", k=10, category="internet")
    assert all(r.article.category == "internet" for r in category.results)
    tagged = sample_service.search("melden", k=10, tags="zählerstand")
    assert tagged.results
    assert all("zählerstand" in r.article.tags for r in tagged.results)
    assert sample_service.search("melden", k=10, tags="gibt-es-nicht").results == ()


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"query": ""}, "q"), ({"query": "   "}, "q"), ({"query": "x" * 10_000}, "q"),
        ({"query": "a", "k": 0}, "k"), ({"query": "a", "k": 10_000}, "k"),
        ({"query": "a", "k": "zehn"}, "k"), ({"query": "a", "language": "fr"}, "lang"),
        ({"query": "a", "mode": "magic"}, "mode"),
    ],
)
def test_invalid_parameters_are_named(sample_service, params, parameter):
    query = params.pop("query")
    with pytest.raises(QueryError) as info:
        sample_service.search(query, **params)
    assert info.value.parameter == parameter


def test_article_lookup_hides_internal_from_public(sample_service):
    assert sample_service.article("zaehlerstand-melden").title
    with pytest.raises(ArticleNotFoundError):
        sample_service.article("kulanz-gutschrift-regeln")
    assert sample_service.article("kulanz-gutschrift-regeln", visibility="internal")
    with pytest.raises(ArticleNotFoundError):
        sample_service.article("dynamischer-stromtarif", visibility="internal")


def test_snippet_picks_the_sentence_with_the_query_words():
    text = "Allgemeines zuerst. Den Zählerstand melden Sie im Portal. Danach Ruhe."
    assert make_snippet(text, "Zählerstand melden") == "Den Zählerstand melden Sie im Portal."
    assert make_snippet("Kurz.", "xyz", fallback="Anfang") == "Anfang"
    assert len(make_snippet("wort " * 200 + ".", "wort")) <= 241


def test_stale_articles_carry_the_stale_feature(sample_service):
    hits = {r.article.id: r.hit for r in sample_service.search(
        "Smart Meter Einbau Termin", log=False, k=10).results}
    assert hits["smart-meter-einbau"].scores["stale"] > 0  # review_by 2026-06-30 has passed
    fresh = [h for i, h in hits.items() if i != "smart-meter-einbau"]
    assert any(h.scores["stale"] == 0 for h in fresh)


def test_searches_are_logged_with_what_they_showed(sample_service):
    response = sample_service.search("Router blinkt rot", channel="bot", client="c1", k=3)
    logged = sample_service.feedback.get_search(response.search_id)
    assert logged.channel == "bot" and logged.client == "c1"
    assert [r.article_id for r in logged.results] == [r.article.id for r in response.results]
    assert [r.position for r in logged.results] == [1, 2, 3]
    assert logged.query_vector.shape == (384,)
    assert response.model_version == "default"
    not_logged = sample_service.search("Router blinkt rot", log=False, k=3)
    assert sample_service.feedback.get_search(not_logged.search_id) is None
    with pytest.raises(QueryError, match="channel"):
        sample_service.search("Router", channel="fax")


def test_a_newly_promoted_weights_version_is_picked_up_without_restart(
    tmp_path, sample_index, fake_embedder
):
    import time

    from kbsearch.ranking.memory import AnsweredQuestion, build_memory
    from kbsearch.ranking.scoring import load_ranking_model
    from kbsearch.ranking.versions import Helpfulness, Ranker
    from kbsearch.service import SearchService

    from .conftest import make_settings

    service = SearchService(make_settings(tmp_path, index=sample_index), embedder=fake_embedder)
    assert service.ranker().version == "default"
    query = "Mein Paket ist nicht angekommen"  # no article is about parcels
    vector = fake_embedder.embed_queries([query])[0]
    memory = build_memory(
        [AnsweredQuestion("wlan-passwort", vector, f"client{i}", time.time()) for i in range(3)],
        time.time(),
    )
    version = service.weights.save(
        Ranker("", load_ranking_model(), memory, Helpfulness()), "default", {}
    )
    service.weights.promote(version)
    time.sleep(1.1)
    assert service.ranker().version == version
    results = service.search(query, log=False, k=3).results
    assert results[0].article.id == "wlan-passwort"
    assert results[0].hit.scores["question_sim"] == pytest.approx(0.875, abs=0.01)


def test_a_broken_feedback_store_never_fails_a_search(tmp_path, sample_index, fake_embedder,
                                                      caplog):
    from kbsearch.service import SearchService

    from .conftest import make_settings

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the database folder should be", "utf-8")
    service = SearchService(
        make_settings(tmp_path, index=sample_index, feedback_db=blocked / "f.sqlite3"),
        embedder=fake_embedder,
    )
    response = service.search("Zählerstand melden", k=2)
    assert response.results[0].article.id == "zaehlerstand-melden"
    assert "not logged for feedback" in caplog.text


def test_warming_up_loads_what_a_first_request_would_wait_for(sample_service):
    from kbsearch.content import analysis

    analysis._identifier.cache_clear()
    sample_service.warm_up()
    assert analysis._identifier.cache_info().currsize == 1  # the bot's language detector
    assert sample_service._index is not None



def test_warming_up_keeps_spinning_blas_on_one_thread(sample_service, monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    from kbsearch import service as service_module

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):  # put back afterwards
        monkeypatch.setattr(service_module, "BLAS_THREADS_SLEEP", True)
        sample_service.warm_up()
        assert 2 in blas_threads()
        monkeypatch.setattr(service_module, "BLAS_THREADS_SLEEP", False)  # numpy came first
        sample_service.warm_up()
        assert blas_threads() and set(blas_threads()) == {1}
