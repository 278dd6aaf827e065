"""One result per translation family: an article and its translations never share a list.

A German article and its English translation answer the same question, so a list that
shows both wastes a place and reads as two answers ("mein internet ist weg" used to get
``router-stoerung`` and ``router-stoerung-en``). The member in the searcher's language is
kept (the requested language, else the query's where it is clear); where the list has
none in it, or the query's language is unclear, the most probable member. The others
are linked from the kept one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kbsearch.ranking.scoring import Hit


def one_per_family(
    hits: Sequence[Hit], families: Sequence[str], languages: Sequence[str],
    preferred: Callable[[], str | None],
) -> list[Hit]:
    """Keep one hit per family, in the order of ``hits`` (best first).

    ``families`` and ``languages`` give each hit's family (its original's id) and language.
    A family's member in the ``preferred`` language (asked for only where a family has two
    or more hits; None where it is unclear) is kept, with its own probability; else the
    family's first hit.
    """
    if len(set(families)) == len(hits):
        return list(hits)
    language = preferred()
    chosen: dict[str, int] = {}
    for row, key in enumerate(families):
        kept = chosen.get(key)
        if kept is None or (languages[row] == language != languages[kept]):
            chosen[key] = row
    keep = set(chosen.values())
    return [hit for row, hit in enumerate(hits) if row in keep]
