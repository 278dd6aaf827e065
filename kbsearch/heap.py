"""A serving process's long-lived objects, kept out of the cyclic garbage collector's way.

An opened build keeps its articles' metadata, Whoosh's readers and the ranking model as
Python objects that live as long as the build: some 70,000 at 10k articles, 160,000 at
100k. CPython's cyclic collector walks every object of its oldest generation from time to
time, and the search that happens to trigger it waits: 51 ms at 10k and 149 ms at 100k
articles, measured (one such collection in 350 searches). ``gc.freeze`` moves every object
alive at that moment into a permanent generation that collections skip; reference
counting still frees them as usual, only reference cycles among them wait for the next
:func:`freeze` with ``collect`` (a new build opened). Frozen before gunicorn forks, the
objects the workers share with the master are not written to by collections either, so
their pages stay shared. What a process caches after that (keyword postings, snippets'
sentences, stems) is kept as strings, arrays and plain tuples of them, which the collector
stops tracking after one pass, so the walks stay short however long a server runs.
"""

from __future__ import annotations

import gc


def freeze(collect: bool = True) -> None:
    """Exempt every object alive now from later cyclic collections.

    With ``collect``, the objects frozen before are thawed and a full collection runs first
    (tens of milliseconds at 10k articles), so that cyclic garbage (a replaced build's) is
    freed rather than kept; without it nothing is touched: what a worker freezes right
    after ``fork`` (the master froze the rest).
    """
    if collect:
        gc.unfreeze()
        gc.collect()
    gc.freeze()
