"""kbsearch.heap: long-lived objects frozen out of the cyclic collector's walks."""

from __future__ import annotations

import dataclasses
import gc
import weakref

from kbsearch import heap


class Node:
    """An object that can sit in a reference cycle and be watched through a weak ref."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    """Make two objects that refer to each other, drop them; return a weak ref to one."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_frozen_objects_are_left_out_of_collections_until_the_next_collecting_freeze():
    kept = Node()
    heap.freeze()
    assert gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # no longer walked
    dropped = cycle()  # made after the freeze: an ordinary collection frees it
    gc.collect()
    assert dropped() is None
    frozen_garbage = cycle()
    heap.freeze(collect=False)  # a worker after fork: touches nothing, collects nothing
    gc.collect()
    assert frozen_garbage() is not None  # frozen: kept until ...
    heap.freeze()  # ... a new build is opened: thawed, collected, frozen again
    assert frozen_garbage() is None


def test_warming_up_and_a_new_build_freeze_what_is_loaded(sample_service, sample_index,
                                                          monkeypatch):
    gc.unfreeze()
    sample_service.warm_up()
    assert gc.get_freeze_count() > 0
    index = sample_service.index()
    assert not any(o is index for o in gc.get_objects())
    frozen: list[bool] = []
    monkeypatch.setattr(heap, "freeze", lambda collect=True: frozen.append(collect))
    sample_service._index = None  # a first search without warm-up: no full collection
    sample_service.index()
    assert frozen == []
    # as if another build had been published since
    sample_service._index = dataclasses.replace(index, version="an older build")
    sample_service._checked = float("-inf")
    assert sample_service.index().version == index.version
    assert frozen == [True]
