"""Agent assist: finding the request in long texts, and the route with roles."""

from __future__ import annotations

import numpy as np
import pytest

from kbsearch.channels.assist import extract_request, matching_sentences, sentence_matches

EMAIL = """Betreff: Zählerstand lässt sich nicht eingeben

Sehr geehrte Damen und Herren,

ich hoffe, es geht Ihnen gut. Ich versuche seit gestern, meinen Zählerstand im Kundenportal
einzugeben, aber ich bekomme immer eine Fehlermeldung. Wie kann ich den Zählerstand sonst
melden?

Kundennummer: 4711-0815

Vielen Dank im Voraus!
Mit freundlichen Grüßen
Erika Mustermann
Musterstraße 1, 12345 Musterstadt
Tel. 0171 1234567

Am 12.11.2026 um 10:14 schrieb NordWerk Kundenservice <service@nordwerk.example>:
> Sehr geehrte Frau Mustermann,
> vielen Dank für Ihre Anfrage zum Tarifwechsel. Ihr neuer Tarif gilt ab 1.12.
> Mit freundlichen Grüßen, Ihr NordWerk-Team
"""

TRANSCRIPT = """[09:14] Agent: NordWerk Kundenservice, Weber, was kann ich für Sie tun?
[09:14] Kunde: Ja hallo, ich ziehe nächsten Monat nach Hamburg.
[09:15] Agent: Das ist schön. Haben Sie Strom und Gas bei uns?
[09:15] Kunde: Nur Strom. Kann ich den Vertrag mitnehmen oder muss ich kündigen?
[09:16] Agent: Einen Moment bitte, ich schaue nach Ihrem Tarif und den Kündigungsfristen.
"""

ENGLISH = """Hi there,

Hope you are well. My internet has been down since Monday and the router light is red.
I already restarted it twice. Can someone help me, please?

Kind regards,
John Smith
--
Sent from my phone
"""


def test_an_email_is_stripped_of_greeting_signature_and_quoted_history():
    request = extract_request(EMAIL, 1000)
    assert "Wie kann ich den Zählerstand sonst melden?" in request.query
    assert "Fehlermeldung" in request.query
    for noise in ("Sehr geehrte", "Mustermann", "Tarifwechsel", "4711", "hoffe", "Vielen Dank"):
        assert noise not in request.query, noise
    assert request.removed["quoted_lines"] == 4
    assert request.removed["signature_lines"] >= 4
    assert request.removed["greeting_lines"] == 1


def test_sentence_spans_point_into_the_original_text():
    request = extract_request(EMAIL, 1000)
    for sentence in request.sentences:
        original = EMAIL[sentence.start:sentence.end]
        assert " ".join(original.split()) == sentence.text
    subject = request.sentences[0]
    assert subject.text == "Zählerstand lässt sich nicht eingeben"  # without "Betreff:"


def test_a_transcript_keeps_the_customer_and_drops_the_agent():
    request = extract_request(TRANSCRIPT, 1000)
    assert "Kann ich den Vertrag mitnehmen oder muss ich kündigen?" in request.query
    assert "Weber" not in request.query and "Kündigungsfristen" not in request.query
    assert "Kunde:" not in request.query
    assert request.removed == {"agent_lines": 3}


def test_an_english_email_works_the_same():
    request = extract_request(ENGLISH, 1000)
    assert "Can someone help me, please?" in request.query
    assert "router light is red" in request.query
    assert "John" not in request.query and "Hope you are well" not in request.query


def test_the_query_stays_within_the_search_limit():
    text = "\n\n".join(f"Warum ist meine Rechnung Nummer {i} so hoch und falsch?" for i in range(
        400))
    request = extract_request(text, 120)
    assert 0 < len(request.query) <= 120


def test_a_text_of_only_history_is_still_searched():
    quoted = "> Mein Router ist kaputt, was soll ich tun?\n> Bitte um Hilfe."
    assert "Router" in extract_request(quoted, 1000).query


@pytest.fixture
def keyed_client(tmp_path, sample_index, fake_embedder):
    """A client and one key per role."""
    from kbsearch.api import create_app
    from kbsearch.service import SearchService
    from kbsearch.stores.keys import KeyStore

    from .conftest import make_settings

    settings = make_settings(tmp_path, index=sample_index)
    store = KeyStore(settings.keys_file)
    keys = {role: store.create(role, role)[1] for role in ("bot", "agent", "editor")}
    app = create_app({"TESTING": True},
                     search_service=SearchService(settings, embedder=fake_embedder))
    return app.test_client(), keys


def test_a_sentence_matches_the_article_it_stands_out_for():
    # sentences x articles: 0 is close to everything, 1 stands out for article 0,
    # 2 for article 3
    similarity = np.array([
        [0.84, 0.835, 0.84, 0.835, 0.84, 0.835],
        [0.90, 0.78, 0.79, 0.80, 0.78, 0.79],
        [0.80, 0.79, 0.78, 0.86, 0.79, 0.80],
    ])
    picked = sentence_matches(similarity, [0, 3, 1, None], per_article=2)
    assert picked[0] == [(1, 0.9)]
    assert picked[1] == [(2, 0.86)]
    assert picked[2] == []  # nothing stands out for article 1, not even the closest sentence
    assert picked[3] == []  # not in the index
    # without enough articles to compare with, the closest sentences count
    assert sentence_matches(similarity[:, :2], [1], per_article=2) == [[(0, 0.835), (2, 0.79)]]
    assert sentence_matches(np.zeros((0, 6)), [0], per_article=2) == [[]]


def test_greetings_and_thanks_match_no_article(model_service):
    sentences = ["Hallo zusammen,", "Was kann ich tun?", "Mein Router blinkt seit gestern rot.",
                 "Außerdem wollte ich noch meinen Zählerstand durchgeben.",
                 "Vielen Dank im Voraus."]
    matches = matching_sentences(
        model_service,
        ["router-stoerung", "zaehlerstand-melden", "nachzahlung-hoch", "gibt-es-nicht"],
        sentences, per_article=5)
    assert matches["router-stoerung"][0][0] == 2
    assert [i for i, _ in matches["zaehlerstand-melden"]] == [3]
    assert matches["nachzahlung-hoch"] == [] and matches["gibt-es-nicht"] == []
    assert all(i not in (0, 4) for found in matches.values() for i, _ in found)


def test_assist_finds_articles_and_the_sentences_that_matched(keyed_client):
    client, keys = keyed_client
    response = client.post("/api/v1/assist", json={"text": EMAIL},
                           headers={"X-API-Key": keys["agent"]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["results"][0]["id"] == "zaehlerstand-melden"
    assert len(body["results"]) == 5  # the assist_results setting
    probabilities = [r["probability"] for r in body["results"]]
    assert probabilities == sorted(probabilities, reverse=True)
    matched = body["results"][0]["matched_sentences"]
    assert matched and all(EMAIL[m["start"]:m["end"]].split() == m["text"].split()
                           for m in matched)
    assert all("Mustermann" not in m["text"] for r in body["results"]
               for m in r["matched_sentences"])
    assert body["request"]["removed"]["quoted_lines"] == 4


def test_assist_includes_internal_articles_for_agents(keyed_client):
    client, keys = keyed_client
    ticket = ("Hallo,\n\nder Kunde beschwert sich über die dritte falsche Rechnung in Folge und "
              "möchte eine Kulanz-Gutschrift. Welche Regeln gelten für eine Gutschrift?\n\n"
              "Gruß\nTeam 2")
    body = client.post("/api/v1/assist", json={"text": ticket},
                       headers={"Authorization": f"Bearer {keys['editor']}"}).get_json()
    internal = [r for r in body["results"] if r["audience"] == "internal"]
    assert internal and internal[0]["id"].startswith("kulanz-gutschrift-regeln")


def test_assist_is_for_agents_and_editors_only(keyed_client):
    client, keys = keyed_client
    anonymous = client.post("/api/v1/assist", json={"text": "Router kaputt"})
    assert anonymous.status_code == 401
    bot = client.post("/api/v1/assist", json={"text": "Router kaputt"},
                      headers={"X-API-Key": keys["bot"]})
    assert bot.status_code == 403 and bot.get_json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("body, field", [
    ({}, "text"),
    ({"text": "   "}, "text"),
    ({"text": 42}, "text"),
    ({"text": "x" * 20_001}, "text"),
    ({"text": "Router", "k": 0}, "k"),
    ({"text": "Router", "urgent": True}, "urgent"),
])
def test_bad_assist_requests_name_the_field(keyed_client, body, field):
    client, keys = keyed_client
    response = client.post("/api/v1/assist", json=body, headers={"X-API-Key": keys["agent"]})
    assert response.status_code == 400
    assert response.get_json()["error"]["message"].startswith(field)


def test_the_longest_allowed_text_is_answered(keyed_client):
    client, keys = keyed_client
    text = (EMAIL + "\n") * (20_000 // (len(EMAIL) + 1))
    response = client.post("/api/v1/assist", json={"text": text[:20_000]},
                           headers={"X-API-Key": keys["agent"]})
    assert response.status_code == 200
    assert response.get_json()["results"]
