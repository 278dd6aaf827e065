"""One result per translation family: an article and its translations never share a list.

A German article and its English translation answer the same question, so a list that
shows both wastes a place and reads as two answers ("mein internet ist weg" used to get
``router-stoerung`` and ``router-stoerung-en``). The member in the searcher's language is
kept (the requested language, else the query's); where the list has none in it, the most
probable member. The others are linked from the kept one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kbsearch.ranking.scoring import Hit


def one_per_family(
    hits: Sequence[Hit], family: Mapping[str, str], language: Mapping[str, str],
    preferred: str | None,
) -> list[Hit]:
    """Keep one hit per family, in the order of ``hits`` (best first).

    ``family`` maps an article id to its family (the original's id; an id it does not
    know is a family of its own), ``language`` an id to its language. A family's member
    in the ``preferred`` language is kept where it is among the hits, with its own
    probability; else the family's first hit.
    """
    chosen: dict[str, Hit] = {}
    for hit in hits:
        key = family.get(hit.id, hit.id)
        kept = chosen.get(key)
        if kept is None or (language.get(hit.id) == preferred != language.get(kept.id)):
            chosen[key] = hit
    keep = {id(hit) for hit in chosen.values()}
    return [hit for hit in hits if id(hit) in keep]
