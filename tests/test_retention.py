"""Retention (kbsearch purge, and daily in the server) and erasure (kbsearch forget)."""

import json
import time

import pytest
from click.testing import CliRunner

from kbsearch.cli import main
from kbsearch.errors import KbsearchError
from kbsearch.stores.callbacks import CallbackRequest, SQLiteCallbackStore
from kbsearch.stores.conversations import Conversation, SQLiteConversationStore, Turn
from kbsearch.stores.feedback_sqlite import SQLiteFeedbackStore
from kbsearch.stores.handoffs import BotHandoff, BotStart, SQLiteHandoffStore
from kbsearch.stores.retention import DAY, DailyPurge, Stores, forget, purge

from .conftest import make_settings
from .test_feedback import make_search

NOW = 2_000_000_000.0


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, retention_search_days=30, retention_callback_days=7)


@pytest.fixture
def stores(settings):
    opened = Stores(
        feedback=SQLiteFeedbackStore(settings.feedback_db),
        callbacks=SQLiteCallbackStore(settings.channels_db),
        conversations=SQLiteConversationStore(settings.channels_db, 3600),
        handoffs=SQLiteHandoffStore(settings.channels_db),
    )
    yield opened
    for store in (opened.feedback, opened.callbacks, opened.conversations, opened.handoffs):
        store.close()


def fill(stores: Stores) -> None:
    """Two searches, two callback requests, two conversations, a bot start and a hand-off.

    One of each is old: a search, a callback request, the start and the hand-off."""
    stores.feedback.log_search(make_search("old", created=NOW - 31 * DAY, query="Strom weg"))
    stores.feedback.log_search(make_search("new", created=NOW - DAY,
                                           query="Rückruf an erika@example.de bitte"))
    for name, phone, when in (("Erika Muster", "0171 2345678", NOW - 8 * DAY),
                              ("Jo Beispiel", "030 1234567", NOW - DAY)):
        stores.callbacks.add(CallbackRequest(name, phone, "asap", "Abschlag zu hoch"), now=when)
    for number, message in enumerate(("Router blinkt", "Mail an ERIKA@example.de")):
        stores.conversations.save(Conversation("client", f"c{number}", NOW, NOW, (
            Turn(NOW, message, (), None, ()),)), None)
    stores.handoffs.record_start(BotStart(NOW - 31 * DAY, "client", "de", "old"))
    stores.handoffs.record_handoff(BotHandoff(NOW - 31 * DAY, "client", "de",
                                              ("human_requested",), "old"))
    stores.handoffs.record_start(BotStart(NOW - DAY, "client", "de", "new"))


def test_purge_deletes_what_is_older_than_its_retention(stores, settings):
    fill(stores)
    assert purge(stores, settings, NOW) == {"searches": 1, "callback_requests": 1,
                                             "conversations": 0, "bot_records": 2}
    assert [s.search_id for s in stores.feedback.searches()] == ["new"]
    assert [s.search_id for s in stores.handoffs.starts()] == ["new"]
    assert list(stores.handoffs.handoffs()) == []
    assert [c.request.name for c in stores.callbacks.recent()] == ["Jo Beispiel"]
    assert purge(stores, settings, NOW) == {"searches": 0, "callback_requests": 0,
                                             "conversations": 0, "bot_records": 0}
    later = NOW + 2 * 3600  # past the conversations' idle time
    assert purge(stores, settings, later)["conversations"] == 2


def test_forget_deletes_every_entry_that_holds_the_text(stores):
    fill(stores)
    assert forget(stores, "Erika@Example.de") == {"searches": 1, "callback_requests": 0,
                                                  "conversations": 1}
    assert forget(stores, "01712345678") == {"searches": 0, "callback_requests": 1,
                                             "conversations": 0}  # the digits of a phone
    assert [s.search_id for s in stores.feedback.searches()] == ["old"]
    assert len(list(stores.handoffs.starts())) == 2  # codes and ids only: nothing to forget
    with pytest.raises(KbsearchError, match="at least 3 characters"):
        forget(stores, " a ")


def test_a_server_purges_once_a_day_and_a_failure_never_reaches_the_request(stores, settings):
    fill(stores)
    clock = [NOW]
    assert DailyPurge(lambda: stores, settings).run_if_due() is None  # 0 hours: turned off
    settings = settings.replace(purge_every_hours=24)
    daily = DailyPurge(lambda: stores, settings, clock=lambda: clock[0])
    assert daily.run_if_due() == {"searches": 1, "callback_requests": 1, "conversations": 0,
                                  "bot_records": 2}
    clock[0] += DAY / 2
    assert daily.run_if_due() is None  # not a day yet
    clock[0] += DAY
    assert daily.run_if_due() is not None

    class Broken:
        def purge(self, before):
            raise RuntimeError("disk on fire")

    broken = DailyPurge(lambda: Stores(Broken(), stores.callbacks, stores.conversations,
                                       stores.handoffs),
                        settings, clock=lambda: NOW)
    assert broken.run_if_due() is None


def test_the_app_purges_on_its_first_request(tmp_path, sample_index, fake_embedder):
    from kbsearch.api import create_app
    from kbsearch.service import SearchService

    service = SearchService(make_settings(tmp_path, index=sample_index, purge_every_hours=24),
                            embedder=fake_embedder)
    service.feedback.log_search(make_search("ancient", created=time.time() - 400 * DAY))
    assert service.feedback.get_search("ancient") is not None
    assert create_app(search_service=service).test_client().get("/healthz").status_code == 200
    assert service.feedback.get_search("ancient") is None


def test_the_commands_purge_and_forget(settings, stores, tmp_path):
    fill(stores)
    env = {"KBSEARCH_FEEDBACK_DB": str(settings.feedback_db),
           "KBSEARCH_CHANNELS_DB": str(settings.channels_db)}
    runner = CliRunner()
    result = runner.invoke(main, ["forget", "--contains", "erika@example.de", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"deleted": {"searches": 1, "callback_requests": 0,
                                                     "conversations": 1}}
    stores.feedback.log_search(make_search("ancient", created=time.time() - 400 * DAY))
    result = runner.invoke(main, ["purge"], env=env)
    assert result.exit_code == 0 and result.output.startswith("deleted: 1 searches")
    result = runner.invoke(main, ["forget", "--contains", "x"], env=env)
    assert result.exit_code == 1 and "at least 3 characters" in result.output
