"""Who may see which article: the one rule, by the caller's role and the article's status.

Only ``published`` articles are ever shown. ``public`` articles are for everybody;
``internal`` ones only for callers whose role is agent or editor. No key means the public,
and so does a bot: chatbots answer customers. Search, article look-ups, the chatbot, agent
assist and the FAQ pages all decide through :func:`may_see`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Visibility = Literal["public", "internal"]
VISIBILITIES: tuple[Visibility, ...] = ("public", "internal")
ROLES = ("bot", "agent", "editor")
INTERNAL_ROLES = frozenset({"agent", "editor"})


class Visible(Protocol):
    """What the rule reads of an article."""

    @property
    def status(self) -> str: ...

    @property
    def audience(self) -> str: ...


def visibility_of(role: str | None) -> Visibility:
    """Return the level a role sees at: internal for agents and editors, else public."""
    return "internal" if role in INTERNAL_ROLES else "public"


def may_see(article: Visible, visibility: str) -> bool:
    """Return True when an article may be shown at a visibility level.

    Raises ValueError for a level that is neither public nor internal, so that a typo can
    never widen what is shown.
    """
    if visibility not in VISIBILITIES:
        raise ValueError(f"unknown visibility {visibility!r}; use public or internal")
    if article.status != "published":
        return False
    return visibility == "internal" or article.audience == "public"


@dataclass(frozen=True)
class Caller:
    """Who is calling: a role (None = the public) and the id of the key used."""

    role: str | None = None
    key_id: str | None = None

    @property
    def visibility(self) -> Visibility:
        """Return the articles this caller may see: internal ones only for agents, editors."""
        return visibility_of(self.role)


PUBLIC = Caller()
