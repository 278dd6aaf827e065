"""The chatbot backend: hand-off rules, conversation store, short answers and the route."""

from __future__ import annotations

import threading

import pytest

from kbsearch.channels.bot import (
    REASONS,
    HandoffRules,
    asks_for_human,
    customer_of,
    falling,
    handoff_reasons,
    handoff_summary,
    message_terms,
    negative_streak,
    only_asks_for_human,
    parse_feedback,
    repetition,
    short_answer,
)
from kbsearch.errors import ConversationConflictError, QueryError
from kbsearch.http.context import Components
from kbsearch.stores.conversations import (
    Conversation,
    Offer,
    SQLiteConversationStore,
    Turn,
    Verdict,
)

RULES = HandoffRules(below=0.4, falling_turns=2, repeat_similarity=0.6, negative_feedbacks=2,
                     human_words=("mitarbeiter", "mensch", "agent", "human"))


def turn(message: str, probability: float | None, article: str = "a", at: float = 0.0) -> Turn:
    offers = () if probability is None else (Offer(article, article.title(), probability, 1),)
    return Turn(at, message, message_terms(message), "s-" + message, offers)


def conversation(*turns: Turn, verdicts: tuple[Verdict, ...] = ()) -> Conversation:
    return Conversation("client", "c1", 0.0, 0.0, turns, verdicts)


@pytest.mark.parametrize("message, expected", [
    ("Ich möchte mit einem Mitarbeiter sprechen", "mitarbeiter"),
    ("Bitte einen echten MENSCHEN!", "mensch"),
    ("Kann mich eine Mitarbeiterin zurückrufen?", "mitarbeiter"),
    ("I want to talk to a human", "human"),
    ("agent please", "agent"),
    ("Mein Zählerstand stimmt nicht", None),
    ("Wie ändere ich meinen Abschlag?", None),
])
def test_asking_for_a_human_is_recognised_in_words_and_inflections(message, expected):
    assert asks_for_human(message, RULES.human_words) == expected


def test_short_human_words_match_whole_words_only():
    assert asks_for_human("Meine Agentur zahlt", ("agent",)) is None


def test_falling_needs_a_real_fall_in_each_of_the_last_turns():
    assert falling([0.9, 0.7, 0.5], 2)
    assert not falling([0.9, 0.7], 2)  # too few turns
    assert not falling([0.9, 0.7, 0.72], 2)  # rose again
    assert not falling([0.9, 0.895, 0.89], 2)  # a wobble, not a fall
    assert falling([0.2, 0.9, 0.7, 0.5], 2)  # only the latest turns count


def test_repetition_is_the_share_of_this_message_found_in_one_earlier_message():
    first = message_terms("Mein Router blinkt rot und das Internet geht nicht")
    again = message_terms("Internet geht nicht, Router blinkt")
    other = message_terms("Wie hoch ist mein Abschlag?")
    assert repetition(again, [first]) >= 0.75
    assert repetition(other, [first]) == 0.0
    assert repetition((), [first]) == 0.0


def test_negative_streak_counts_only_the_latest_run():
    verdicts = [Verdict(0, "a", "not_helpful"), Verdict(1, "b", "helpful"),
                Verdict(2, "c", "not_helpful"), Verdict(3, "d", "escalated")]
    assert negative_streak(verdicts) == 2
    assert negative_streak(verdicts[:2]) == 0


def test_a_confident_answer_needs_no_handoff():
    assert handoff_reasons(RULES, conversation(turn("Zählerstand melden", 0.85)), True) == []


def test_each_handoff_rule_fires_on_its_own():
    low = handoff_reasons(RULES, conversation(turn("Zählerstand melden", 0.2)), True)
    assert [r.code for r in low] == ["low_probability"]
    none = handoff_reasons(RULES, conversation(turn("xyzzy", None)), True)
    assert [r.code for r in none] == ["no_answer"]
    fall = conversation(turn("Rechnung zu hoch", 0.9), turn("Nachzahlung verstehen", 0.7),
                        turn("Abschlag erklären", 0.5))
    assert [r.code for r in handoff_reasons(RULES, fall, True)] == ["falling_probability"]
    repeat = conversation(turn("Router blinkt rot Internet geht nicht", 0.8, "r"),
                          turn("Internet geht nicht Router blinkt", 0.8, "r"))
    assert [r.code for r in handoff_reasons(RULES, repeat, True)] == ["repeated_terms"]
    human = conversation(turn("Ich will einen Mitarbeiter", 0.9))
    assert [r.code for r in handoff_reasons(RULES, human, True)] == ["human_requested"]
    negative = conversation(turn("Router", 0.9), verdicts=(
        Verdict(0, "a", "not_helpful"), Verdict(1, "b", "not_helpful")))
    assert [r.code for r in handoff_reasons(RULES, negative, False)] == ["negative_feedback"]


def test_rules_follow_their_settings():
    strict = HandoffRules(below=0.9, falling_turns=5, repeat_similarity=1.0,
                          negative_feedbacks=3, human_words=("operator",))
    talk = conversation(turn("Ich will einen Mitarbeiter", 0.85))
    assert [r.code for r in handoff_reasons(strict, talk, True)] == ["low_probability"]
    two_bad = conversation(turn("Router", 0.95), verdicts=(
        Verdict(0, "a", "not_helpful"), Verdict(1, "b", "not_helpful")))
    assert handoff_reasons(strict, two_bad, False) == []


def test_the_summary_tells_the_agent_the_whole_story():
    talk = conversation(
        turn("Mein Internet geht nicht", 0.8, "router-stoerung"),
        turn("Immer noch kein Internet", 0.3, "stoerung-melden"),
        verdicts=(Verdict(0, "router-stoerung", "not_helpful"),),
    )
    reasons = handoff_reasons(RULES, talk, True)
    summary = handoff_summary(talk, reasons)
    assert summary["questions"] == ["Mein Internet geht nicht", "Immer noch kein Internet"]
    assert [a["id"] for a in summary["articles_tried"]] == ["router-stoerung", "stoerung-melden"]
    assert summary["articles_tried"][0]["feedback"] == "not_helpful"
    assert summary["reasons"] == ["low_probability"]
    assert "Mein Internet geht nicht" in summary["text"]
    assert "nicht hilfreich" in summary["text"] and REASONS["low_probability"] in summary["text"]


@pytest.mark.parametrize("message, only", [
    ("Ich möchte mit einem Mitarbeiter sprechen", True),
    ("Bitte verbinden Sie mich jetzt mit einem Menschen!", True),
    ("I want to talk to a human, please", True),
    ("Mitarbeiter!", True),
    ("Mein Router geht nicht, ich will einen Mitarbeiter", False),
    ("Wie erreiche ich einen Berater wegen meiner Rechnung?", False),
    ("Mein Internet geht nicht", False),
])
def test_a_message_that_only_asks_for_a_human(message, only):
    assert only_asks_for_human(message, RULES.human_words) is only


def test_the_summary_leaves_out_messages_that_only_ask_for_a_human():
    talk = conversation(
        turn("Mein Internet geht nicht", 0.8, "router-stoerung"),
        turn("Ich möchte mit einem Mitarbeiter sprechen", 0.7, "kontakt-oeffnungszeiten"),
    )
    reasons = handoff_reasons(RULES, talk, True)
    assert "human_requested" in [r.code for r in reasons]
    summary = handoff_summary(talk, reasons, RULES.human_words)
    assert summary["questions"] == ["Mein Internet geht nicht"]
    assert "Mitarbeiter sprechen" not in summary["text"]
    assert REASONS["human_requested"] in summary["text"]
    # without the rules' words every message counts, as before
    assert len(handoff_summary(talk, reasons)["questions"]) == 2


def test_short_answer_takes_the_passage_that_matches_the_question():
    markdown = (
        "# Zählerstand melden\n\nSo melden Sie Ihren Stand in wenigen Minuten.\n\n"
        "## Per App\n\nÖffnen Sie die NordWerk App. Fotografieren Sie den Zähler. "
        "Die App liest den Stand selbst ab.\n\n## Per Post\n\n"
        "Schicken Sie uns die Ablesekarte zurück. Das Porto zahlen wir.\n"
    )
    answer = short_answer(markdown, "Zählerstand melden", "Ablesekarte per Post schicken")
    assert answer == "Schicken Sie uns die Ablesekarte zurück. Das Porto zahlen wir."
    assert short_answer(markdown, "Zählerstand melden", "xyzzy").startswith("So melden Sie")
    assert "#" not in short_answer(markdown, "Zählerstand melden", "App")
    assert len(short_answer("Ein Satz mit Inhalt. " * 40, "t", "Satz", limit=100)) <= 100


@pytest.mark.parametrize("raw, message", [
    (5, "feedback: must be an event name"),
    ("great", "feedback.event"),
    ({"event": "helpful", "extra": 1}, "unknown field"),
    ({"event": "helpful", "article_id": ""}, "feedback.article_id"),
])
def test_bad_feedback_is_named(raw, message):
    with pytest.raises(QueryError, match=message):
        parse_feedback(raw)


def test_the_store_forgets_idle_conversations(tmp_path):
    store = SQLiteConversationStore(tmp_path / "sub" / "channels.sqlite3", idle_seconds=60)
    talk = Conversation("client", "c1", 100.0, 100.0, (turn("Router", 0.5),))
    store.save(talk, None)
    assert store.get("client", "c1", 150.0).turns[0].message == "Router"
    assert store.get("other-client", "c1", 150.0) is None  # each client has its own ids
    assert store.get("client", "c1", 161.0) is None  # idle too long
    assert store.get("client", "c1", 120.0) is None  # and it is gone for good
    store.save(Conversation("client", "old", 0.0, 0.0), None)
    store.save(Conversation("client", "new", 500.0, 500.0), None)
    assert store.purge(520.0) == 1


def test_a_racing_turn_is_refused_not_overwritten(tmp_path):
    store = SQLiteConversationStore(tmp_path / "channels.sqlite3", idle_seconds=600)
    store.save(Conversation("k", "c1", 1.0, 1.0), None)
    first = Conversation("k", "c1", 1.0, 2.0, (turn("eins", 0.5),))
    second = Conversation("k", "c1", 1.0, 3.0, (turn("zwei", 0.5),))
    store.save(first, 1.0)
    with pytest.raises(ConversationConflictError, match="send the turn again"):
        store.save(second, 1.0)
    with pytest.raises(ConversationConflictError):
        store.save(Conversation("k", "c1", 5.0, 5.0), None)  # a live one is not replaced
    assert store.get("k", "c1", 10.0).turns[0].message == "eins"


def test_concurrent_new_conversations_are_all_kept(tmp_path):
    store = SQLiteConversationStore(tmp_path / "channels.sqlite3", idle_seconds=600)
    errors = []

    def write(n: int) -> None:
        try:
            for i in range(20):
                store.save(Conversation("k", f"c{n}-{i}", 1.0, 1.0), None)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(store.get("k", f"c{n}-{i}", 2.0) for n in range(4) for i in range(20))


# --- the route, with the fake embedder and the sample knowledge base ----------------------

@pytest.fixture
def bot_client(tmp_path, sample_index, fake_embedder):
    """A client with a bot key; returns (client, headers, service)."""
    from kbsearch.api import create_app
    from kbsearch.service import SearchService
    from kbsearch.stores.keys import KeyStore

    from .conftest import make_settings

    settings = make_settings(tmp_path, index=sample_index)
    key = KeyStore(settings.keys_file).create("bot", "test bot")[1]
    service = SearchService(settings, embedder=fake_embedder)
    app = create_app({"TESTING": True}, search_service=service)
    return app.test_client(), {"Authorization": f"Bearer {key}"}, service


def events_for(service, search_id):
    return [e for e in service.feedback.events() if e.search_id == search_id]


def post(client, headers, **body):
    return client.post("/api/v1/bot/turn", json=body, headers=headers)


def test_a_conversation_that_ends_in_a_handoff(bot_client):
    client, headers, service = bot_client
    first = post(client, headers, conversation_id="t-1",
                 message="Wie melde ich meinen Zählerstand?")
    assert first.status_code == 200
    body = first.get_json()
    assert body["new_conversation"] and body["turn"] == 1
    assert body["article"]["id"] == "zaehlerstand-melden"
    assert body["article"]["url"] == "/articles/zaehlerstand-melden"
    assert "Zählerstand" in body["article"]["short_answer"]
    assert body["probability"] == body["article"]["probability"] >= 0.5
    assert len(body["alternatives"]) == 2
    assert body["handoff"] == {"recommended": False, "reasons": [], "summary": None}

    nope = post(client, headers, conversation_id="t-1", feedback="not_helpful").get_json()
    assert not nope["new_conversation"]
    assert nope["article"]["id"] == body["alternatives"][0]["id"]  # the next best is offered
    logged = events_for(service, body["search_id"])
    assert [(e.article_id, e.event, e.channel) for e in logged] == [
        ("zaehlerstand-melden", "not_helpful", "bot")]

    again = post(client, headers, conversation_id="t-1", feedback="not_helpful",
                 message="Ich möchte bitte mit einem Mitarbeiter sprechen").get_json()
    codes = [r["code"] for r in again["handoff"]["reasons"]]
    assert again["handoff"]["recommended"]
    assert "human_requested" in codes and "negative_feedback" in codes
    summary = again["handoff"]["summary"]
    assert summary["questions"][0] == "Wie melde ich meinen Zählerstand?"
    assert summary["articles_tried"][0] == {
        "id": "zaehlerstand-melden", "title": body["article"]["title"],
        "probability": body["probability"], "feedback": "not_helpful"}
    assert [f["event"] for f in summary["feedback"]] == ["not_helpful", "not_helpful"]


def test_a_question_the_knowledge_base_cannot_answer_is_handed_off(bot_client):
    client, headers, _ = bot_client
    body = post(client, headers, conversation_id="t-2",
                message="Wie backe ich einen Apfelkuchen mit Streuseln?").get_json()
    assert body["handoff"]["recommended"]
    assert body["handoff"]["reasons"][0]["code"] in ("low_probability", "no_answer")


def test_a_customer_repeating_himself_is_handed_off(bot_client):
    client, headers, _ = bot_client
    post(client, headers, conversation_id="t-3", message="Mein Router blinkt rot, kein Internet")
    body = post(client, headers, conversation_id="t-3",
                message="Router blinkt rot und kein Internet").get_json()
    assert "repeated_terms" in [r["code"] for r in body["handoff"]["reasons"]]


def test_helpful_feedback_alone_closes_the_question(bot_client):
    client, headers, service = bot_client
    first = post(client, headers, conversation_id="t-4", message="SEPA Lastschrift einrichten")
    body = post(client, headers, conversation_id="t-4", feedback="helpful").get_json()
    assert body["article"] is None and not body["handoff"]["recommended"]
    events = events_for(service, first.get_json()["search_id"])
    assert [e.event for e in events] == ["helpful"]
    # the same turn sent twice (a bot retrying) is counted once
    post(client, headers, conversation_id="t-4", feedback="helpful")
    assert len(events_for(service, first.get_json()["search_id"])) == 1


@pytest.mark.parametrize("body, status, field", [
    ({"message": "Router"}, 400, "conversation_id"),
    ({"conversation_id": "bad id with spaces", "message": "Router"}, 400, "conversation_id"),
    ({"conversation_id": "c", "message": 5}, 400, "message"),
    ({"conversation_id": "c"}, 400, "message"),
    ({"conversation_id": "c", "message": "   "}, 400, "message"),
    ({"conversation_id": "c", "message": "x" * 5000}, 400, "message"),
    ({"conversation_id": "c", "message": "Router", "mood": "sad"}, 400, "mood"),
    ({"conversation_id": "fresh", "feedback": "helpful"}, 404, "feedback"),  # nothing to judge
    ({"conversation_id": "c", "message": "Router", "feedback": "love"}, 400, "feedback.event"),
])
def test_bad_turns_get_a_clear_error(bot_client, body, status, field):
    client, headers, _ = bot_client
    response = client.post("/api/v1/bot/turn", json=body, headers=headers)
    assert response.status_code == status
    assert response.get_json()["error"]["message"].startswith(field)


def test_feedback_on_an_article_that_was_not_offered_is_refused(bot_client):
    client, headers, _ = bot_client
    post(client, headers, conversation_id="t-5", message="Rufnummer mitnehmen")
    response = post(client, headers, conversation_id="t-5",
                    feedback={"event": "helpful", "article_id": "umzug-melden"})
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "unknown_answer"
    assert "was not offered" in response.get_json()["error"]["message"]


def test_expired_conversations_are_deleted_by_later_turns(bot_client):
    client, headers, service = bot_client
    from flask import current_app

    with client.application.app_context():
        bot = Components.of(current_app).bot
    bot.turn("old", "Router blinkt rot", client="k", now=1_000.0)
    idle = service.settings.bot_idle_minutes * 60
    bot.turn("new", "SEPA Lastschrift", client="k", now=1_000.0 + idle + 61)
    assert bot.store.get("k", "old", 1_000.0) is None  # gone even when read as if still live
    fresh = bot.turn("old", "Router blinkt rot", client="k", now=1_000.0 + idle + 62)
    assert fresh.new_conversation


def test_the_bot_route_needs_a_key(bot_client):
    client, _, _ = bot_client
    response = client.post("/api/v1/bot/turn", json={"conversation_id": "c", "message": "x"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_api_key"


def test_each_conversation_counts_as_its_own_customer(bot_client):
    client, headers, service = bot_client
    first = post(client, headers, conversation_id="k-1", message="Router blinkt rot").get_json()
    again = post(client, headers, conversation_id="k-1", message="WLAN langsam").get_json()
    other = post(client, headers, conversation_id="k-2", message="Router blinkt rot").get_json()
    assert post(client, headers, conversation_id="k-2", feedback="helpful").status_code == 200
    clients = {s.search_id: s.client for s in service.feedback.searches()}
    assert clients[first["search_id"]] == clients[again["search_id"]]
    assert clients[first["search_id"]] != clients[other["search_id"]]
    assert [e.client for e in events_for(service, other["search_id"])] == [
        clients[other["search_id"]]]
    # one bot's conversation k-1 is not another bot's
    assert customer_of("bot-a", "k-1") != customer_of("bot-b", "k-1")
