"""Personal data out of free text: realistic German and English cases, and what must stay."""

import re

import pytest

from kbsearch.content.redaction import Redactor, iban_valid, luhn_valid

REDACT = Redactor()

CASES = [
    # (text, what the stored text must be)
    ("Meine E-Mail ist erika.muster@example.de, bitte antworten",
     "Meine E-Mail ist [email], bitte antworten"),
    ("mail me at john.smith+kb@mail.example.co.uk", "mail me at [email]"),
    ("Rufen Sie mich an: 0171 2345678", "Rufen Sie mich an: [phone]"),
    ("Tel. +49 30 12345678 oder 030/1234567", "Tel. [phone] oder [phone]"),
    ("call me on +44 20 7946 0958 after 5", "call me on [phone] after 5"),
    ("Abbuchung von DE89 3704 0044 0532 0130 00 klappt nicht",
     "Abbuchung von [iban] klappt nicht"),
    ("IBAN DE89370400440532013000", "IBAN [iban]"),
    ("card 4111 1111 1111 1111 was charged twice", "card [card] was charged twice"),
    ("Meine Kundennummer ist 12345678, Vertragsnummer: VN-2024-7788",
     "Meine Kundennummer ist [number], Vertragsnummer: [number]"),
    ("my customer number 99887766 is on the bill", "my customer number [number] is on the bill"),
    ("Ich wohne jetzt in der Hauptstraße 12a, 10115 Berlin",
     "Ich wohne jetzt in der [address], [address]"),
    ("new address: 221 Baker Street, London", "new address: [address], London"),
    ("Mein Name ist Erika Mustermann und mein Strom ist weg",
     "Mein Name ist [name] und mein Strom ist weg"),
    ("Guten Tag, hier spricht Frau Schmidt wegen der Rechnung",
     "Guten Tag, hier spricht Frau [name] wegen der Rechnung"),
    ("Router blinkt rot.\nViele Grüße\nJan Meier", "Router blinkt rot.\nViele Grüße\n[name]"),
    ("my name is Anna Lee, the router is dead", "my name is [name], the router is dead"),
    # what must stay as it is
    ("Zählerstand 012345 kWh am 01.12.2026 abgelesen", None),
    ("Der Abschlag steigt von 89,00 € auf 104,50 € ab 1. Januar", None),
    ("Artikel 4711-0815 passt zu Router FRITZ!Box 7590", None),
    ("Wie melde ich meinen Zählerstand?", None),
    ("Tarif Ökostrom 24 kostet 0,32 €/kWh", None),
    ("Termin um 08:30 Uhr, Störung seit 3 Tagen", None),
    ("Invoice total 1234.56 EUR, due 2026-12-31", None),
    ("Was kostet ein Umzug nach Hamburg?", None),
    ("Wo finde ich meine Kundennummer? Kundennummer vergessen", None),
    ("Vertragslaufzeit 24 Monate, Kündigungsfrist 3 Monate", None),
    ("DE12 3456 7890 1234 5678 90 is not a valid IBAN", None),  # checksum fails
    ("1234 5678 9012 3456 is no card number", None),  # Luhn fails
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_personal_data_is_replaced_and_the_rest_stays(text, expected):
    assert REDACT.redact(text) == (text if expected is None else expected)


def test_operators_own_number_patterns_are_redacted_too():
    redactor = Redactor.with_patterns([r"\bNW-\d{6}\b"])
    assert redactor.redact("Zähler NW-123456 zeigt Unsinn") == "Zähler [number] zeigt Unsinn"
    assert REDACT.redact("Zähler NW-123456 zeigt Unsinn") == "Zähler NW-123456 zeigt Unsinn"


def test_checksums():
    assert iban_valid("DE89 3704 0044 0532 0130 00") and iban_valid("GB82WEST12345698765432")
    assert not iban_valid("DE89 3704 0044 0532 0130 01")
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_redacting_twice_changes_nothing_more():
    text = "Kundennummer 12345678, Tel. 0171 2345678, erika@example.de"
    once = REDACT.redact(text)
    assert REDACT.redact(once) == once
    assert not re.search(r"\d{5,}|@", once)


EMAIL, PHONE, IBAN = "erika.muster@example.de", "0171 2345678", "DE89 3704 0044 0532 0130 00"
SECRETS = (EMAIL, "2345678", IBAN, IBAN.replace(" ", ""), "erika.muster")


def test_no_store_keeps_personal_data_after_every_channel(tmp_path, sample_index, fake_embedder):
    from kbsearch.api import create_app
    from kbsearch.service import SearchService
    from kbsearch.stores.keys import KeyStore

    from .conftest import make_settings

    settings = make_settings(tmp_path / "data", index=sample_index)
    store = KeyStore(settings.keys_file)
    bot, agent = (store.create(role, f"test {role}")[1] for role in ("bot", "agent"))
    client = create_app({"TESTING": True},
                        search_service=SearchService(settings, embedder=fake_embedder)
                        ).test_client()
    personal = f"Lastschrift von {IBAN} geht nicht, mail {EMAIL} oder Tel. {PHONE}"

    found = client.get("/api/v1/search", query_string={"q": personal}).get_json()
    assert not any(s in found["query"] for s in SECRETS) and "[iban]" in found["query"]
    assert client.post("/api/v1/feedback", json={
        "search_id": found["search_id"], "feedback_token": found["feedback_token"],
        "article_id": found["results"][0]["id"],
        "event": "helpful"}).status_code == 201
    turn = client.post("/api/v1/bot/turn", json={"conversation_id": "c-1", "message": personal},
                       headers={"Authorization": f"Bearer {bot}"})
    assert turn.status_code == 200
    helped = client.post("/api/v1/assist", json={"text": f"Hallo,\n{personal}\nViele Grüße\n"
                                                          "Erika Muster"},
                         headers={"Authorization": f"Bearer {agent}"})
    assert helped.status_code == 200
    called = client.post("/rueckruf", data={
        "name": "Erika Muster", "phone": "030 9999999", "preferred_time": "asap",
        "description": personal, "context": f"search: {personal}"})
    assert called.status_code == 303

    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert any(p.name.startswith("channels") for p in files)
    assert any(p.name.startswith("feedback") for p in files)
    for path in files:
        content = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in content, (path.name, secret)
