"""Which sessions hold which halted threads."""

from __future__ import annotations

import functools

from hwbkptd.core.clock import ManualClock
from hwbkptd.core.halts import HeldThreads


def test_a_thread_is_free_when_its_last_holder_lets_go() -> None:
    book = HeldThreads()
    book.hold(1, 10, "s1", 5)
    book.hold(1, 10, "s2", 6)
    book.hold(1, 11, "s1", 5)
    assert book.held_by("s1") == (10, 11)
    assert book.tids() == (10, 11)
    assert not book.release(10, "s1")
    assert 10 in book
    assert not book.release(10, "s1")  # not held by s1 any more
    assert book.release(10, "s2")
    assert 10 not in book
    assert book.held_by("s2") == ()


def test_the_first_breakpoint_of_a_session_is_kept() -> None:
    book = HeldThreads()
    book.hold(1, 10, "s1", 5)
    halt = book.hold(1, 10, "s1", 6)
    assert halt.holders == {"s1": 5}
    assert book.get(10) is halt
    assert book.get(11) is None


def test_drop_and_release_cancel_the_timer() -> None:
    book = HeldThreads()
    clock = ManualClock()
    fired: list[int] = []
    for tid in (10, 11, 12):
        halt = book.hold(1, tid, "s", 1)
        halt.timer = clock.call_later(1, functools.partial(fired.append, tid))
    assert book.drop(10) is not None
    assert book.release(11, "s")
    clock.advance(2)
    assert fired == [12]  # the one still held
    assert book.drop(10) is None
