"""Versioned ranking weights: trained versions side by side, one of them current.

A folder (setting ``weights_dir``) holds one ``<version>.json`` per trained version (the
ranking model, the helpfulness counts it learnt, how it was evaluated and whether it was
promoted) and beside it ``<version>.questions.npz`` (its learned questions). ``CURRENT``
names the version in use and ``HISTORY`` lists every promotion, so ``rollback`` can go back
one step. Both are replaced atomically; a running service re-reads ``CURRENT`` every second.
With no version promoted yet, the weights shipped with kbsearch are used (version
``default``).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kbsearch.errors import ConfigError, KbsearchError
from kbsearch.fileio import atomic_write_text
from kbsearch.ranking.memory import QuestionMemory, empty_memory
from kbsearch.ranking.scoring import RankingModel, helpfulness_score, load_ranking_model

DEFAULT_VERSION = "default"
CURRENT = "CURRENT"
HISTORY = "HISTORY"


class VersionNotFoundError(KbsearchError):
    """No trained weights version has this name."""


VersionNames = list[str]  # (inside WeightsStore, ``list`` names its method)

@dataclass(frozen=True)
class Helpfulness:
    """Helpful and unhelpful feedback counts per article, and the prior they shrink to."""

    counts: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    prior_mean: float = 0.5
    strength: float = 10.0

    def scores(self, article_ids: tuple[str, ...] | list[str]) -> np.ndarray:
        """Return the helpfulness feature of each article (0 for articles without votes)."""
        positive = np.array([self.counts.get(a, (0.0, 0.0))[0] for a in article_ids])
        negative = np.array([self.counts.get(a, (0.0, 0.0))[1] for a in article_ids])
        return helpfulness_score(positive, negative, self.prior_mean, self.strength)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"prior_mean": self.prior_mean, "strength": self.strength,
                "counts": {a: list(c) for a, c in sorted(self.counts.items())}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Helpfulness:
        """Read counts written by :meth:`to_json`."""
        return cls(
            counts={a: (float(c[0]), float(c[1])) for a, c in data.get("counts", {}).items()},
            prior_mean=float(data.get("prior_mean", 0.5)),
            strength=float(data.get("strength", 10.0)),
        )


@dataclass(frozen=True)
class Ranker:
    """Everything one weights version ranks with."""

    version: str
    model: RankingModel
    questions: QuestionMemory
    helpfulness: Helpfulness


@dataclass(frozen=True)
class VersionInfo:
    """What ``weights list`` shows of a version."""

    version: str
    created: str
    status: str
    parent: str
    reason: str
    current: bool


def default_ranker(path: str | Path | None = None) -> Ranker:
    """Return the shipped weights (or a pinned weights file) without learned state."""
    return Ranker(DEFAULT_VERSION if not path else str(path), load_ranking_model(path),
                  empty_memory(), Helpfulness())


class WeightsStore:
    """The weights versions in one folder."""

    def __init__(self, folder: Path) -> None:
        """Use ``folder`` (created on the first save)."""
        self.folder = Path(folder)

    def current_version(self) -> str:
        """Return the version in use (``default`` when none has been promoted)."""
        try:
            name = (self.folder / CURRENT).read_text("utf-8").strip()
        except FileNotFoundError:
            return DEFAULT_VERSION
        return name if name and self._path(name).exists() else DEFAULT_VERSION

    def current_stamp(self) -> float:
        """Return the modification time of CURRENT (0 without one), to notice a switch."""
        try:
            return (self.folder / CURRENT).stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            return 0.0

    def load(self, version: str | None = None) -> Ranker:
        """Return a version (the current one by default); raise VersionNotFoundError."""
        version = version or self.current_version()
        if version == DEFAULT_VERSION:
            return default_ranker()
        document = self.document(version)
        questions_path = self.folder / f"{version}.questions.npz"
        questions = QuestionMemory.load(questions_path) if questions_path.exists() else (
            empty_memory()
        )
        try:
            model = RankingModel.from_json(document["model"])
        except KeyError:
            raise ConfigError(f"{self._path(version)} has no 'model'") from None
        return Ranker(version, model, questions,
                      Helpfulness.from_json(document.get("helpfulness", {})))

    def document(self, version: str) -> dict[str, Any]:
        """Return a version's JSON document; raise VersionNotFoundError."""
        if version == DEFAULT_VERSION:
            return {"version": DEFAULT_VERSION, "status": "shipped",
                    "model": load_ranking_model().to_json()}
        path = self._path(version)
        try:
            return json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            known = ", ".join(v.version for v in self.list()) or "none"
            raise VersionNotFoundError(
                f"no weights version {version!r} in {self.folder} (known: {known})"
            ) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from None

    def list(self) -> list[VersionInfo]:
        """Return every stored version, oldest first, and the shipped default first of all."""
        current = self.current_version()
        infos = [VersionInfo(DEFAULT_VERSION, "", "shipped", "", "", current == DEFAULT_VERSION)]
        if not self.folder.is_dir():
            return infos
        for path in sorted(self.folder.glob("*.json")):
            try:
                doc = json.loads(path.read_text("utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            infos.append(VersionInfo(
                path.stem, str(doc.get("created", "")), str(doc.get("status", "")),
                str(doc.get("parent", "")), str(doc.get("reason", "")), path.stem == current,
            ))
        return infos

    def save(self, ranker: Ranker, parent: str, report: Mapping[str, Any]) -> str:
        """Store a new version (not yet current) and return its name."""
        now = dt.datetime.now(dt.UTC)
        version = now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
        self.folder.mkdir(parents=True, exist_ok=True)
        ranker.questions.save(self.folder / f"{version}.questions.npz")
        document = {
            "version": version,
            "created": now.isoformat(timespec="seconds"),
            "parent": parent,
            "status": "candidate",
            "reason": "",
            "report": dict(report),
            "model": ranker.model.to_json(),
            "helpfulness": ranker.helpfulness.to_json(),
            "questions": len(ranker.questions),
        }
        atomic_write_text(self._path(version), json.dumps(document, indent=2) + "\n")
        return version

    def mark(self, version: str, status: str, reason: str) -> None:
        """Record a version's status (promoted, rejected) and the reason."""
        document = self.document(version)
        document.update(status=status, reason=reason)
        atomic_write_text(self._path(version), json.dumps(document, indent=2) + "\n")

    def promote(self, version: str, reason: str = "promoted by hand") -> None:
        """Make a version current (the running service follows within a second)."""
        if version != DEFAULT_VERSION:
            self.mark(version, "promoted", reason)
        if version == self.current_version():
            return
        history = self.history()
        history.append(version)
        atomic_write_text(self.folder / HISTORY, "".join(v + "\n" for v in history))
        atomic_write_text(self.folder / CURRENT, version + "\n")

    def rollback(self) -> str:
        """Make the version promoted before the current one current again; return it.

        The shipped default counts as the first promotion, so rolling back the first trained
        version returns to it. Raises VersionNotFoundError when there is nothing before.
        """
        promoted = [DEFAULT_VERSION, *self.history()]
        if len(promoted) < 2:
            raise VersionNotFoundError("nothing to roll back to: the shipped weights are in use")
        previous = promoted[-2]
        atomic_write_text(self.folder / HISTORY, "".join(v + "\n" for v in promoted[1:-1]))
        atomic_write_text(self.folder / CURRENT, previous + "\n")
        return previous

    def history(self) -> VersionNames:
        """Return the promoted versions, oldest first."""
        try:
            text = (self.folder / HISTORY).read_text("utf-8")
        except FileNotFoundError:
            return []
        return [line.strip() for line in text.splitlines() if line.strip()]

    def _path(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise VersionNotFoundError(f"{version!r} is not a weights version name")
        return self.folder / f"{version}.json"
