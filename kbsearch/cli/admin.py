"""Commands for operators: API keys, callback requests, retention, erasure, backup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from kbsearch.stores.callbacks import CallbackStore
    from kbsearch.stores.retention import Stores

from kbsearch.cli.base import _settings, friendly_errors, main


@main.group()
def keys() -> None:
    """Create, list and revoke API keys (roles: bot, agent, editor)."""


def _key_store() -> Any:
    from kbsearch.stores.keys import KeyStore

    settings = _settings()
    return KeyStore(settings.keys_file, settings.api_keys)


@keys.command(name="create")
@click.option("--role", type=click.Choice(("bot", "agent", "editor")), required=True,
              help="bot: public articles; agent, editor: internal articles too.")
@click.option("--name", required=True, help="Who or what uses the key, for people.")
@friendly_errors
def keys_create(role: str, name: str) -> None:
    """Create a key and print it once: only its SHA-256 digest is stored (KBSEARCH_KEYS_FILE)."""
    stored, key = _key_store().create(role, name)
    click.echo(key)
    click.echo(f"key {stored.key_id} ({role}, {name}) created; it is shown only now. "
               "Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'. "
               f"As a KBSEARCH_API_KEYS entry: {role}:{stored.digest}", err=True)


@keys.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@friendly_errors
def keys_list(as_json: bool) -> None:
    """List the keys (ids, roles, names; never the keys themselves)."""
    entries = [{"id": k.key_id, "role": k.role, "name": k.name, "created": k.created,
                "revoked": k.revoked} for k in _key_store().list()]
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for entry in entries:
        state = "revoked" if entry["revoked"] else "active"
        click.echo(f"{entry['id']}  {entry['role']:6s}  {state:7s}  {entry['created']}  "
                   f"{entry['name']}")


@keys.command(name="revoke")
@click.argument("key_id")
@friendly_errors
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id; requests with it get 401 from then on."""
    revoked = _key_store().revoke(key_id)
    click.echo(f"key {revoked.key_id} ({revoked.role}, {revoked.name}) revoked")


@main.group()
def callbacks() -> None:
    """The callback requests customers left on the FAQ page (KBSEARCH_CHANNELS_DB)."""


def _callback_store() -> CallbackStore:
    """Return the store of callback requests in the configured channels database."""
    from kbsearch.stores.callbacks import SQLiteCallbackStore

    return SQLiteCallbackStore(_settings().channels_db)


@callbacks.command(name="list")
@click.option("--status", type=click.Choice(("open", "done", "all")), default="open",
              show_default=True, help="Which requests to list.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@friendly_errors
def callbacks_list(status: str, limit: int, as_json: bool) -> None:
    """List callback requests, newest first: reference, time, phone, name and the request."""
    from kbsearch.stores.callbacks import callback_json

    stored = _callback_store().recent(limit, None if status == "all" else status)
    entries = [callback_json(s) for s in stored]
    if as_json:
        click.echo(json.dumps(entries, indent=2, ensure_ascii=False))
        return
    if not entries:
        click.echo(f"no {'' if status == 'all' else status + ' '}callback requests")
        return
    for e in entries:  # one block per request: readable in any terminal width
        click.echo(f"{e['reference']}  {e['status']}  {e['created'].replace('T', ' ')[:16]} UTC"
                   f"  call: {e['preferred_time']}")
        click.echo(f"  {e['name']}, {e['phone']} ({e['language']})")
        click.echo(f"  {e['description']}")
        if e["context"]:
            click.echo(f"  came from: {e['context']}")


@callbacks.command(name="done")
@click.argument("reference")
@click.option("--reopen", is_flag=True, help="Mark the request open again.")
@friendly_errors
def callbacks_done(reference: str, reopen: bool) -> None:
    """Mark a callback request as done (called back), e.g. 'kbsearch callbacks done RR-7K3M9P'."""
    stored = _callback_store().set_status(reference, "open" if reopen else "done")
    click.echo(f"{stored.reference} ({stored.request.name}, {stored.request.phone}) "
               f"is now {stored.status}")


def _stores() -> Stores:
    """Open the stores of the configured databases."""
    from kbsearch.stores.callbacks import SQLiteCallbackStore
    from kbsearch.stores.conversations import SQLiteConversationStore
    from kbsearch.stores.feedback_sqlite import SQLiteFeedbackStore
    from kbsearch.stores.handoffs import SQLiteHandoffStore
    from kbsearch.stores.retention import Stores

    settings = _settings()
    return Stores(
        feedback=SQLiteFeedbackStore(settings.feedback_db),
        callbacks=SQLiteCallbackStore(settings.channels_db),
        conversations=SQLiteConversationStore(settings.channels_db,
                                              settings.bot_idle_minutes * 60),
        handoffs=SQLiteHandoffStore(settings.channels_db),
    )


def _report_deleted(deleted: dict[str, int], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"deleted": deleted}))
        return
    click.echo("deleted: " + ", ".join(f"{n} {what.replace('_', ' ')}"
                                        for what, n in deleted.items()))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@friendly_errors
def purge(as_json: bool) -> None:
    """Delete what is older than its retention (KBSEARCH_RETENTION_*); a server does it daily."""
    from kbsearch.stores.retention import purge as run_purge

    _report_deleted(run_purge(_stores(), _settings()), as_json)


@main.command()
@click.option("--contains", "text", required=True,
              help="An e-mail address, phone number or name: every entry holding it goes.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@friendly_errors
def forget(text: str, as_json: bool) -> None:
    """Delete every search, conversation and callback request that holds a text (erasure)."""
    from kbsearch.stores.retention import forget as run_forget

    _report_deleted(run_forget(_stores(), text), as_json)


def _report_backup(action: str, summary: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_json()))
        return
    build = summary.index_version or "no index build"
    click.echo(f"{action} {summary.folder}: {', '.join(summary.parts) or 'nothing'} "
               f"({summary.files} files; {build})")


@main.command(name="backup")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@friendly_errors
def backup_command(folder: Path, as_json: bool) -> None:
    """Back up the databases, keys, weights and the index build in use into a new FOLDER.

    Safe while the server runs: the databases are copied with SQLite's backup API.
    """
    from kbsearch.backup import backup

    _report_backup("backed up into", backup(_settings(), folder), as_json)


@main.command(name="restore")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True,
              help="Replace databases, keys, weights and index that are already there "
                   "(stop the server first).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@friendly_errors
def restore_command(folder: Path, force: bool, as_json: bool) -> None:
    """Restore a backup FOLDER into the configured paths, after checking every file."""
    from kbsearch.backup import restore

    _report_backup("restored from", restore(_settings(), folder, force), as_json)
