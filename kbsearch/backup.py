"""Back up and restore what a kbsearch installation keeps: ``kbsearch backup`` / ``restore``.

A backup is a folder::

    manifest.json          format, kbsearch version, time, index build, SHA-256 of each file
    data/feedback.sqlite3  the search and feedback log   (SQLite online backup API)
    data/channels.sqlite3  conversations, callbacks, the bot's record, dashboard logins
    data/keys.json         API keys (digests only, as kept)
    data/feedback.secret   the secret of the feedback tokens (tokens handed out stay valid)
    weights/               every weights version with CURRENT and HISTORY
    index/CURRENT, index/builds/<version>/   the build in use

The databases are copied with SQLite's backup API, so a backup taken while the server runs
is consistent (each database as of one moment). A restore checks every file against the
manifest first and then writes into the configured paths; it refuses to replace what is
already there unless forced. Stop the server before restoring over a live installation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbsearch import __version__
from kbsearch.config import Settings
from kbsearch.errors import BackupError, IndexFormatError
from kbsearch.fileio import atomic_write_text
from kbsearch.index.builds import BUILDS, CURRENT, check_format, current_version

BACKUP_FORMAT = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class BackupSummary:
    """What a backup holds or a restore wrote: the parts, the index build, file count."""

    folder: Path
    parts: tuple[str, ...]
    index_version: str | None
    files: int

    def to_json(self) -> dict[str, Any]:
        """Return the summary as ``--json`` prints it."""
        return {"folder": str(self.folder), "parts": list(self.parts),
                "index_version": self.index_version, "files": self.files}


def _targets(settings: Settings) -> dict[str, Path]:
    """Return each file part of a backup and where the settings keep it."""
    return {"data/feedback.sqlite3": settings.feedback_db,
            "data/channels.sqlite3": settings.channels_db,
            "data/keys.json": settings.keys_file,
            "data/feedback.secret": settings.feedback_secret_file}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> Iterator[Path]:
    """Yield the regular files below folder, in path order."""
    yield from sorted(p for p in folder.rglob("*") if p.is_file())


def copy_database(source: Path, target: Path) -> None:
    """Copy one SQLite database with the online backup API (consistent while written)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def backup(settings: Settings, folder: Path) -> BackupSummary:
    """Write a backup of the installation into folder (new or empty); raise BackupError."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BackupError(f"{folder} is not an empty folder; back up into a new one")
    parts: list[str] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, source in _targets(settings).items():
            if not source.exists():
                continue
            if name.endswith(".sqlite3"):
                copy_database(source, folder / name)
            else:
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, folder / name)
            parts.append(name)
        if settings.weights_dir.is_dir():
            shutil.copytree(settings.weights_dir, folder / "weights",
                            ignore=shutil.ignore_patterns(".*"))
            parts.append("weights")
        version = current_version(settings.index)
        if version is not None:
            shutil.copytree(settings.index / BUILDS / version,
                            folder / "index" / BUILDS / version)
            atomic_write_text(folder / "index" / CURRENT, version + "\n")
            parts.append("index")
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"cannot back up into {folder}: {exc}") from exc
    files = {str(p.relative_to(folder)): _sha256(p) for p in _files(folder)}
    manifest = {"format": BACKUP_FORMAT, "kbsearch_version": __version__,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "parts": parts, "index_version": version, "files": files}
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return BackupSummary(folder, tuple(parts), version, len(files))


def read_manifest(folder: Path) -> dict[str, Any]:
    """Return a backup's manifest after checking every file; raise BackupError naming one."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{folder} is not a kbsearch backup: {MANIFEST} is missing") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{folder / MANIFEST} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        raise BackupError(f"{folder / MANIFEST}: backup format {manifest.get('format')!r} "
                          f"is not {BACKUP_FORMAT}, the one this kbsearch reads")
    listed = manifest.get("files", {})
    found = {str(p.relative_to(folder)) for p in _files(folder)} - {MANIFEST}
    for name in sorted(found | set(listed)):
        if name not in listed:
            raise BackupError(f"{folder}: {name} is not in the manifest; the backup was changed")
        if name not in found:
            raise BackupError(f"{folder}: {name} is missing; the backup is incomplete")
        if _sha256(folder / name) != listed[name]:
            raise BackupError(f"{folder}: {name} does not match its checksum; the backup "
                              "is damaged")
    return manifest


def _occupied(settings: Settings) -> list[str]:
    """Return the configured places a restore would replace that already hold something."""
    taken = [str(path) for path in _targets(settings).values() if path.exists()]
    if settings.weights_dir.is_dir() and any(settings.weights_dir.iterdir()):
        taken.append(str(settings.weights_dir))
    if current_version(settings.index) is not None:
        taken.append(str(settings.index))
    return taken


def restore(settings: Settings, folder: Path, force: bool = False) -> BackupSummary:
    """Restore a backup into the configured paths; raise BackupError, changing nothing, when
    the backup is damaged or (without ``force``) when something is already there."""
    manifest = read_manifest(folder)
    taken = _occupied(settings)
    if taken and not force:
        raise BackupError("these already hold data and would be replaced: "
                          f"{', '.join(taken)}; restore into an empty home, or use --force "
                          "(stop the server first)")
    version = manifest.get("index_version")
    if version is not None:
        build = json.loads((folder / "index" / BUILDS / version / "manifest.json")
                           .read_text("utf-8"))
        try:
            check_format(build, version)
        except IndexFormatError as exc:
            raise BackupError(f"{folder}: {exc}") from None
    try:
        for name, target in _targets(settings).items():
            if name not in manifest["parts"]:
                continue
            if name.endswith(".sqlite3"):
                copy_database(folder / name, target)  # SQLite replaces pages, WAL and all
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(folder / name, target)
        if "weights" in manifest["parts"]:
            shutil.copytree(folder / "weights", settings.weights_dir, dirs_exist_ok=True)
        if version is not None:
            destination = settings.index / BUILDS / version
            if not destination.exists():
                shutil.copytree(folder / "index" / BUILDS / version, destination)
            atomic_write_text(settings.index / CURRENT, version + "\n")
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"cannot restore {folder}: {exc}") from exc
    return BackupSummary(folder, tuple(manifest["parts"]), version, len(manifest["files"]))
