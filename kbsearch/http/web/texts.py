"""Every string the FAQ pages show, in German (the default) and English.

``TEXTS[language][key]`` is a plain string; some carry ``{placeholders}`` that the
templates fill with ``.format``. Both languages have exactly the same keys (a test checks).
"""

from __future__ import annotations

from collections.abc import Mapping

UI_LANGUAGES: tuple[str, ...] = ("de", "en")
DEFAULT_UI = "de"

TEXTS: dict[str, dict[str, str]] = {
    "de": {
        # frame
        "site_name": "NordWerk Hilfe",
        "site_suffix": "NordWerk Kundenservice",
        "skip": "Zum Inhalt springen",
        "nav_label": "Service",
        "nav_topics": "Themen",
        "nav_contact": "Persönliche Hilfe",
        "switch_to": "English",
        "switch_label": "Switch to English",
        "footer_note": "NordWerk Energie & Telekommunikation · Hilfe und FAQ",
        # search
        "home_title": "Wie können wir helfen?",
        "home_lead": "Suchen Sie in unseren Antworten – oder sprechen Sie direkt mit uns.",
        "search_label": "Ihre Frage",
        "search_hint": "Die Ergebnisse erscheinen schon beim Tippen.",
        "search_placeholder": "z. B. Zählerstand melden, Internet geht nicht",
        "search_button": "Suchen",
        "search_landmark": "Hilfe durchsuchen",
        "results_for": "Ergebnisse für „{query}“",
        "count_none": "Keine Artikel gefunden.",
        "count_one": "1 Artikel gefunden.",
        "count_many": "{count} Artikel gefunden.",
        "no_results": "Dazu haben wir leider keinen passenden Artikel gefunden.",
        "query_empty": "Bitte geben Sie eine Frage oder ein paar Stichwörter ein.",
        "query_too_long": "Ihre Frage ist zu lang: Bitte kürzen Sie sie auf höchstens "
                          "{limit} Zeichen.",
        "search_unavailable": "Die Suche ist gerade nicht verfügbar. Bitte versuchen Sie es "
                              "gleich noch einmal – oder sprechen Sie direkt mit uns.",
        "fit_label": "Einschätzung:",
        "prob_very_likely": "passt sehr wahrscheinlich",
        "prob_likely": "passt wahrscheinlich",
        "prob_maybe": "könnte passen",
        "prob_unlikely": "passt eher nicht",
        "lang_de": "Deutsch",
        "lang_en": "Englisch",
        "in_language": "Artikel auf {language}",
        # browsing
        "topics_title": "Themen",
        "topics_lead": "Sie möchten lieber stöbern? Alle Antworten nach Themen:",
        "topic_count_one": "1 Artikel",
        "topic_count_many": "{count} Artikel",
        "topic_all": "Alle Artikel zum Thema {name}",
        "category_lead": "Alle Antworten zum Thema {name}.",
        # article
        "breadcrumb": "Sie sind hier",
        "crumb_home": "Hilfe",
        "back_to_results": "Zurück zu den Ergebnissen für „{query}“",
        "updated": "Stand: {date}",
        "read_in_de": "Diesen Artikel auf Deutsch lesen",
        "read_in_en": "Read this article in English",
        "only_in": "Diesen Artikel gibt es nur auf {language}.",
        "related_title": "Verwandte Artikel",
        "vote_question": "Hat Ihnen dieser Artikel geholfen?",
        "vote_yes": "Ja",
        "vote_no": "Nein",
        "vote_thanks_yes": "Danke für Ihre Rückmeldung! Schön, dass wir helfen konnten.",
        "vote_thanks_no": "Danke für Ihre Rückmeldung. Schade, dass dieser Artikel nicht "
                          "geholfen hat.",
        "vote_duplicate": "Ihre Antwort zu diesem Artikel haben wir bereits erhalten – danke!",
        "vote_failed": "Ihre Antwort konnte leider nicht gespeichert werden. Bitte versuchen "
                       "Sie es später noch einmal.",
        "vote_invalid": "Bitte antworten Sie mit „Ja“ oder „Nein“.",
        "vote_sending": "Wird gesendet …",
        "alternatives_title": "Vielleicht hilft Ihnen einer dieser Artikel",
        "alternatives_none": "Weitere passende Artikel haben wir leider nicht.",
        # the way to a human
        "human_title": "Persönliche Hilfe",
        "human_lead": "Lieber mit einem Menschen sprechen? Wir sind für Sie da.",
        "human_lead_unsure": "Wir sind nicht sicher, ob unsere Artikel Ihre Frage beantworten. "
                             "Am schnellsten hilft Ihnen jetzt ein Mensch:",
        "human_lead_none": "Dazu haben wir keinen passenden Artikel gefunden. Am schnellsten "
                           "hilft Ihnen jetzt ein Mensch:",
        "human_lead_no": "Wir helfen Ihnen gern persönlich weiter:",
        "call_title": "Anrufen",
        "call_note": "kostenlos · Mo–Fr 8–20 Uhr, Sa 9–14 Uhr",
        "callback_title": "Rückruf vereinbaren",
        "callback_note": "Wir rufen Sie zu Ihrer Wunschzeit an.",
        "chat_title": "Live-Chat starten",
        "chat_note": "mit unserem Serviceteam (öffnet den Chat)",
        "phone_short": "Telefon",
        # callback form
        "callback_page_title": "Rückruf vereinbaren",
        "callback_intro": "Hinterlassen Sie uns Ihre Nummer – wir rufen Sie kostenlos zurück.",
        "field_name": "Ihr Name",
        "field_phone": "Telefonnummer",
        "field_phone_hint": "z. B. 0171 2345678 oder +49 171 2345678",
        "field_time": "Wann passt es Ihnen?",
        "field_description": "Worum geht es?",
        "field_description_hint": "Kurz in ein, zwei Sätzen (höchstens {limit} Zeichen).",
        "required": "Pflichtfeld",
        "time_choose": "Bitte wählen …",
        "time_asap": "So bald wie möglich",
        "time_morning": "Vormittags (8–12 Uhr)",
        "time_midday": "Mittags (12–14 Uhr)",
        "time_afternoon": "Nachmittags (14–17 Uhr)",
        "time_evening": "Abends (17–20 Uhr)",
        "callback_privacy": "Wir verwenden Ihre Angaben nur für diesen Rückruf.",
        "callback_submit": "Rückruf anfordern",
        "errors_title": "Bitte prüfen Sie Ihre Angaben:",
        "error_name_required": "Bitte geben Sie Ihren Namen ein.",
        "error_name_too_long": "Ihr Name ist zu lang (höchstens {limit} Zeichen).",
        "error_phone_required": "Bitte geben Sie Ihre Telefonnummer ein.",
        "error_phone_invalid": "Bitte geben Sie eine Telefonnummer mit 6 bis 15 Ziffern ein "
                               "(erlaubt sind Ziffern, Leerzeichen, +, -, / und Klammern).",
        "error_preferred_time_required": "Bitte wählen Sie, wann wir Sie anrufen sollen.",
        "error_preferred_time_invalid": "Bitte wählen Sie eine der angebotenen Zeiten.",
        "error_description_required": "Bitte beschreiben Sie kurz, worum es geht.",
        "error_description_too_long": "Ihre Beschreibung ist zu lang (höchstens {limit} "
                                      "Zeichen).",
        "callback_too_large": "Ihre Angaben sind zu lang. Bitte kürzen Sie die Beschreibung.",
        "callback_failed": "Ihre Rückrufbitte konnte gerade nicht gespeichert werden. Bitte "
                           "rufen Sie uns an: {phone}.",
        "callback_done_title": "Danke – wir rufen Sie zurück",
        "callback_done_text": "Ihre Rückrufbitte ist bei uns eingegangen.",
        "callback_done_time": "Ihre Wunschzeit: {slot}",
        "callback_reference": "Ihre Vorgangsnummer",
        "callback_reference_note": "Bitte halten Sie die Nummer bereit, falls Sie uns "
                                   "vorher anrufen.",
        "back_home": "Zurück zur Hilfe-Startseite",
        # errors
        "not_found_title": "Seite nicht gefunden",
        "not_found_text": "Diese Seite oder diesen Artikel gibt es nicht (mehr). Vielleicht "
                          "hilft Ihnen die Suche weiter.",
        "error_title": "Das hat leider nicht geklappt",
        "error_text": "Bitte versuchen Sie es gleich noch einmal. Wenn es eilt, sprechen Sie "
                      "direkt mit uns.",
        "method_text": "Diese Seite lässt sich so nicht aufrufen.",
        "too_many_title": "Einen Moment bitte",
        "too_many_text": "Von Ihrem Anschluss kamen gerade sehr viele Anfragen. Bitte versuchen "
                         "Sie es in einer Minute noch einmal – oder sprechen Sie direkt mit uns.",
    },
    "en": {
        # frame
        "site_name": "NordWerk Help",
        "site_suffix": "NordWerk customer service",
        "skip": "Skip to content",
        "nav_label": "Service",
        "nav_topics": "Topics",
        "nav_contact": "Talk to a person",
        "switch_to": "Deutsch",
        "switch_label": "Auf Deutsch umschalten",
        "footer_note": "NordWerk energy & telecommunications · Help and FAQ",
        # search
        "home_title": "How can we help?",
        "home_lead": "Search our answers – or talk to us directly.",
        "search_label": "Your question",
        "search_hint": "Results appear as you type.",
        "search_placeholder": "e.g. submit meter reading, internet not working",
        "search_button": "Search",
        "search_landmark": "Search the help",
        "results_for": "Results for “{query}”",
        "count_none": "No articles found.",
        "count_one": "1 article found.",
        "count_many": "{count} articles found.",
        "no_results": "Sorry, we have no article that matches your question.",
        "query_empty": "Please type a question or a few words.",
        "query_too_long": "Your question is too long: please shorten it to at most {limit} "
                          "characters.",
        "search_unavailable": "Search is not available right now. Please try again in a "
                              "moment – or talk to us directly.",
        "fit_label": "Our estimate:",
        "prob_very_likely": "very likely to help",
        "prob_likely": "likely to help",
        "prob_maybe": "might help",
        "prob_unlikely": "probably not what you need",
        "lang_de": "German",
        "lang_en": "English",
        "in_language": "Article in {language}",
        # browsing
        "topics_title": "Topics",
        "topics_lead": "Rather browse? All answers by topic:",
        "topic_count_one": "1 article",
        "topic_count_many": "{count} articles",
        "topic_all": "All articles about {name}",
        "category_lead": "All answers about {name}.",
        # article
        "breadcrumb": "You are here",
        "crumb_home": "Help",
        "back_to_results": "Back to the results for “{query}”",
        "updated": "Last updated: {date}",
        "read_in_de": "Diesen Artikel auf Deutsch lesen",
        "read_in_en": "Read this article in English",
        "only_in": "This article is only available in {language}.",
        "related_title": "Related articles",
        "vote_question": "Did this article help you?",
        "vote_yes": "Yes",
        "vote_no": "No",
        "vote_thanks_yes": "Thank you for your feedback! We are glad we could help.",
        "vote_thanks_no": "Thank you for your feedback. We are sorry this article did not "
                          "help.",
        "vote_duplicate": "We have already recorded your answer for this article – thank you!",
        "vote_failed": "Sorry, your answer could not be saved. Please try again later.",
        "vote_invalid": "Please answer “Yes” or “No”.",
        "vote_sending": "Sending …",
        "alternatives_title": "Perhaps one of these articles helps",
        "alternatives_none": "Sorry, we have no other matching articles.",
        # the way to a human
        "human_title": "Talk to a person",
        "human_lead": "Rather talk to a person? We are here for you.",
        "human_lead_unsure": "We are not sure our articles answer your question. A person can "
                             "help you fastest now:",
        "human_lead_none": "We found no article that matches. A person can help you fastest "
                           "now:",
        "human_lead_no": "We are happy to help you in person:",
        "call_title": "Call us",
        "call_note": "free of charge · Mon–Fri 8 am–8 pm, Sat 9 am–2 pm",
        "callback_title": "Request a callback",
        "callback_note": "We call you at a time that suits you.",
        "chat_title": "Start a live chat",
        "chat_note": "with our service team (opens the chat)",
        "phone_short": "Phone",
        # callback form
        "callback_page_title": "Request a callback",
        "callback_intro": "Leave us your number – we will call you back free of charge.",
        "field_name": "Your name",
        "field_phone": "Phone number",
        "field_phone_hint": "e.g. 0171 2345678 or +49 171 2345678",
        "field_time": "When suits you?",
        "field_description": "What is it about?",
        "field_description_hint": "One or two sentences (at most {limit} characters).",
        "required": "required",
        "time_choose": "Please choose …",
        "time_asap": "As soon as possible",
        "time_morning": "Morning (8 am–12 noon)",
        "time_midday": "Midday (12 noon–2 pm)",
        "time_afternoon": "Afternoon (2 pm–5 pm)",
        "time_evening": "Evening (5 pm–8 pm)",
        "callback_privacy": "We use your details only for this callback.",
        "callback_submit": "Request callback",
        "errors_title": "Please check your details:",
        "error_name_required": "Please enter your name.",
        "error_name_too_long": "Your name is too long (at most {limit} characters).",
        "error_phone_required": "Please enter your phone number.",
        "error_phone_invalid": "Please enter a phone number with 6 to 15 digits (digits, "
                               "spaces, +, -, / and brackets are allowed).",
        "error_preferred_time_required": "Please choose when we should call you.",
        "error_preferred_time_invalid": "Please choose one of the times offered.",
        "error_description_required": "Please describe briefly what it is about.",
        "error_description_too_long": "Your description is too long (at most {limit} "
                                      "characters).",
        "callback_too_large": "Your details are too long. Please shorten the description.",
        "callback_failed": "Your callback request could not be saved right now. Please call "
                           "us: {phone}.",
        "callback_done_title": "Thank you – we will call you back",
        "callback_done_text": "We have received your callback request.",
        "callback_done_time": "Your preferred time: {slot}",
        "callback_reference": "Your reference",
        "callback_reference_note": "Please keep it at hand in case you call us before.",
        "back_home": "Back to the help home page",
        # errors
        "not_found_title": "Page not found",
        "not_found_text": "This page or article does not exist (any more). Perhaps the search "
                          "can help.",
        "error_title": "Sorry, that did not work",
        "error_text": "Please try again in a moment. If it is urgent, talk to us directly.",
        "method_text": "This page cannot be opened this way.",
        "too_many_title": "One moment, please",
        "too_many_text": "We have just had a great many requests from your connection. Please "
                         "try again in a minute, or talk to us directly.",
    },
}

CATEGORY_NAMES: dict[str, dict[str, str]] = {
    "de": {
        "zaehler": "Zähler & Ablesung", "umzug": "Umzug", "tarife": "Tarife",
        "rechnung": "Rechnung & Abschlag", "zahlung": "Zahlung",
        "vertrag": "Vertrag & Kündigung", "internet": "Internet & Router",
        "mobilfunk": "Mobilfunk", "konto": "Kundenkonto",
        "solar-emobilitaet": "Solar & E-Mobilität", "service": "Service & Kontakt",
    },
    "en": {
        "zaehler": "Meters & readings", "umzug": "Moving house", "tarife": "Tariffs",
        "rechnung": "Bills & instalments", "zahlung": "Payment",
        "vertrag": "Contract & cancellation", "internet": "Internet & router",
        "mobilfunk": "Mobile", "konto": "Customer account",
        "solar-emobilitaet": "Solar & e-mobility", "service": "Service & contact",
    },
}


def texts(language: str) -> Mapping[str, str]:
    """Return the UI strings of a language (German for an unknown one)."""
    return TEXTS.get(language, TEXTS[DEFAULT_UI])


def category_name(category: str, language: str) -> str:
    """Return a category's display name; an unnamed category shows its key, capitalised."""
    names = CATEGORY_NAMES.get(language, CATEGORY_NAMES[DEFAULT_UI])
    return names.get(category) or category.replace("-", " ").capitalize()
