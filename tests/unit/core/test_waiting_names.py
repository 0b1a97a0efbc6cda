"""hwbkptd.core.waiting_names: a name waits for its module, polled on the core's clock
(issue 13 item 5). ManualClock: nothing sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from hwbkptd.core.broker_types import BreakpointSpec
from hwbkptd.core.clock import ManualClock
from hwbkptd.core.errors import NotFound
from hwbkptd.core.model import Access, PendingReason, RequestState, Scope
from hwbkptd.core.names import HitWords, NotMappedYet, Resolved
from hwbkptd.core.waiting_names import POLL_SECONDS, WaitingName, WaitingNames

SPEC = BreakpointSpec(Scope.PROCESS, 0, 8, Access.WRITE, pid=7, symbol="lib.so!x")


class Names:
    def __init__(self) -> None:
        self.mapped = False
        self.calls = 0

    def resolve(self, scope: Scope, pid: int, location: str, access: Access) -> Resolved:
        self.calls += 1
        if not self.mapped:
            raise NotMappedYet("spec.symbol", "lib.so is not mapped")
        return Resolved(location, 0x7000, 8, "x")

    def describe_hit(self, pid: int, ip: int, address: int, access: Access | None) -> HitWords:
        return HitWords()

    def forget(self, pid: int) -> None:
        pass


def table(names: Names, clock: ManualClock, alive: set[str]) -> tuple[WaitingNames, list[int]]:
    placed: list[int] = []

    async def place(entry: WaitingName) -> None:
        placed.append(entry.id)

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run(coro)  # the broker spawns a task; here it runs to its end at once

    waiting = WaitingNames(
        names=names, clock=clock, place=place, spawn=spawn, alive=lambda s: s in alive
    )
    return waiting, placed


def test_item5_waits_until_mapped_then_places_once() -> None:
    names, clock = Names(), ManualClock()
    waiting, placed = table(names, clock, {"s1"})
    entry = WaitingName(3, "s1", "ide", SPEC)
    waiting.add(entry)
    view = waiting.view(entry)
    assert (view.state, view.reason, view.chunks) == (
        RequestState.PENDING,
        PendingReason.UNRESOLVED,
        (),
    )
    clock.advance(POLL_SECONDS * 5)
    assert names.calls == 5
    assert placed == []
    assert 3 in waiting
    names.mapped = True
    clock.advance(POLL_SECONDS)
    assert placed == [3]
    assert 3 not in waiting
    assert clock.pending() == 0  # nothing waits: no timer runs


def test_item5_a_closed_session_stops_waiting() -> None:
    names, clock = Names(), ManualClock()
    alive = {"s1"}
    waiting, placed = table(names, clock, alive)
    waiting.add(WaitingName(4, "s1", "ide", SPEC))
    alive.clear()
    clock.advance(POLL_SECONDS)
    assert 4 not in waiting
    assert placed == []
    assert clock.pending() == 0


def test_item5_other_errors_go_to_place_which_says_why() -> None:
    names, clock = Names(), ManualClock()

    def gone(scope: Scope, pid: int, location: str, access: Access) -> Resolved:
        raise NotFound("spec.pid", "process 7 is gone")

    names.resolve = gone  # type: ignore[method-assign]
    waiting, placed = table(names, clock, {"s1"})
    waiting.add(WaitingName(5, "s1", "ide", SPEC))
    clock.advance(POLL_SECONDS)
    assert placed == [5]


def test_item5_pop_and_close() -> None:
    names, clock = Names(), ManualClock()
    waiting, _ = table(names, clock, {"s1"})
    waiting.add(WaitingName(6, "s1", "ide", SPEC))
    assert [w.id for w in waiting.of_session("s1")] == [6]
    assert waiting.pop(6) is not None
    assert clock.pending() == 0
    waiting.add(WaitingName(7, "s1", "ide", SPEC))
    waiting.close()
    assert 7 not in waiting
    assert clock.pending() == 0
