import json
import stat

import pytest

from kbsearch.errors import ConfigError
from kbsearch.stores.keys import PUBLIC, AuthError, KeyStore, digest, key_from_headers


def test_created_keys_authenticate_with_their_role_and_are_stored_hashed(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    stored, key = store.create("agent", "Team Nord")
    assert key.startswith(f"kbs_{stored.key_id}_")
    caller = store.authenticate(key)
    assert caller.role == "agent" and caller.key_id == stored.key_id
    assert caller.visibility == "internal"
    text = (tmp_path / "keys.json").read_text("utf-8")
    assert key not in text and digest(key) in text
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600
    bot, bot_key = store.create("bot", "Chatbot")
    assert store.authenticate(bot_key).visibility == "public"
    assert [k.key_id for k in store.list()] == [stored.key_id, bot.key_id]


def test_no_key_is_public_but_unknown_and_revoked_keys_are_refused(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    assert store.authenticate(None) is PUBLIC and store.authenticate("  ") is PUBLIC
    with pytest.raises(AuthError, match="unknown API key"):
        store.authenticate("kbs_00000000_guess")
    stored, key = store.create("editor", "Redaktion")
    store.revoke(stored.key_id)
    with pytest.raises(AuthError, match="revoked"):
        store.authenticate(key)
    with pytest.raises(ConfigError, match="no API key with id"):
        store.revoke("nope")
    with pytest.raises(ConfigError, match="unknown role"):
        store.create("admin", "x")


def test_keys_from_the_environment(tmp_path):
    key = "kbs_deadbeef_secret"
    store = KeyStore(tmp_path / "keys.json", f"bot:{digest(key)}, agent:{digest('other')}")
    assert store.authenticate(key).role == "bot"
    assert store.authenticate("other").role == "agent"
    with pytest.raises(ConfigError, match="comes from KBSEARCH_API_KEYS"):
        store.revoke("env1")
    with pytest.raises(ConfigError, match="entry 1: expected role:sha256hex"):
        KeyStore(tmp_path / "k.json", "bot:1234")
    with pytest.raises(ConfigError, match="unknown role"):
        KeyStore(tmp_path / "k.json", f"boss:{digest(key)}")


def test_a_malformed_key_file_is_named(tmp_path):
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [{"id": 1}]}), "utf-8")
    with pytest.raises(ConfigError, match="keys.json"):
        KeyStore(tmp_path / "keys.json").list()


def test_keys_are_read_from_either_header():
    assert key_from_headers({"Authorization": "Bearer abc"}) == "abc"
    assert key_from_headers({"X-API-Key": "xyz"}) == "xyz"
    assert key_from_headers({}) is None
