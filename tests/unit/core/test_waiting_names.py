"""hwbkptd.core.waiting_names: a name waits for its module, polled on the core's clock
(issue 13 item 5). ManualClock: nothing sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from hwbkptd.core.broker_types import BreakpointSpec, BreakpointView, Identity
from hwbkptd.core.clock import ManualClock
from hwbkptd.core.errors import BrokerError, FailedPrecondition, InvalidArgument, NotFound
from hwbkptd.core.events import Removed
from hwbkptd.core.model import Access, PendingReason, RequestState, Scope
from hwbkptd.core.names import HitWords, NameProgress, NotMappedYet, Resolved
from hwbkptd.core.sessions import SessionTable
from hwbkptd.core.waiting_names import POLL_SECONDS, WaitingNames

SPEC = BreakpointSpec(Scope.PROCESS, 0, 8, Access.WRITE, pid=7, symbol="lib.so!x")


class Names:
    def __init__(self) -> None:
        self.mapped = False
        self.gone = False
        self.calls = 0

    def resolve(self, scope: Scope, pid: int, location: str, access: Access) -> Resolved:
        self.calls += 1
        if self.gone:
            raise NotFound("spec.pid", "process 7 is gone")
        if not self.mapped:
            raise NotMappedYet("spec.symbol", "lib.so is not mapped")
        return Resolved(location, 0x7000, 8, "x")

    def prepare_hits(self, pid: int, address: int, report: NameProgress) -> None:
        pass

    def describe_hit(self, pid: int, ip: int, address: int, access: Access | None) -> HitWords:
        return HitWords()

    def forget(self, pid: int) -> None:
        pass


class World:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.names = Names()
        self.sessions = SessionTable(self.clock, lambda s: None)
        self.session = self.sessions.open(
            "ide", identity=Identity(), lease_seconds=10, hit_buffer=8, retention=64
        )
        self.placed: list[int] = []
        self.refuse: BrokerError | None = None
        self.waiting = WaitingNames(
            names=self.names,
            clock=self.clock,
            sessions=self.sessions,
            set_under=self._set_under,
            spawn=self._spawn,
        )
        #: Timers of others (the session's lease): the table's own come on top.
        self.others = self.clock.pending()

    async def _set_under(self, token: str, spec: BreakpointSpec, rid: int) -> BreakpointView:
        assert token == self.session.token
        if self.refuse is not None:
            raise self.refuse
        self.placed.append(rid)
        return self.waiting.view(self.waiting.get(rid))  # type: ignore[arg-type]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run(coro)  # the broker spawns a task; here it runs to its end at once

    def removed(self) -> list[tuple[int, str]]:
        return [
            (e.breakpoint_id, e.kind.reason)
            for e in self.session.log.take(0, 0)
            if isinstance(e.kind, Removed)
        ]


def test_item5_waits_until_mapped_then_places_once() -> None:
    w = World()
    view = w.waiting.wait(w.session, SPEC, 3)
    assert (view.id, view.state, view.reason) == (3, RequestState.PENDING, PendingReason.UNRESOLVED)
    assert view.chunks == ()
    assert [v.id for v in w.waiting.views(w.session)] == [3]
    w.clock.advance(POLL_SECONDS * 5)
    assert w.names.calls == 5
    assert w.placed == []
    w.names.mapped = True
    w.clock.advance(POLL_SECONDS)
    assert w.placed == [3]
    assert 3 not in w.waiting
    assert w.clock.pending() == w.others  # nothing waits: no timer runs


def test_item5_a_closed_session_stops_waiting() -> None:
    w = World()
    w.waiting.wait(w.session, SPEC, 4)
    w.sessions.remove(w.session)
    w.clock.advance(POLL_SECONDS)
    assert 4 not in w.waiting
    assert w.placed == []
    assert w.clock.pending() == 0  # the lease's timer went with the session


@pytest.mark.parametrize(
    ("gone", "refuse", "reason"),
    [
        (True, NotFound("spec.pid", "no traced process 7"), "target_exited"),
        (False, InvalidArgument("spec.length", "too long for x"), "unresolved"),
    ],
)
def test_item5_a_request_that_cannot_be_placed_ends_saying_why(
    gone: bool, refuse: BrokerError, reason: str
) -> None:
    w = World()
    w.names.gone = gone
    w.names.mapped = True
    w.refuse = refuse
    w.waiting.wait(w.session, SPEC, 5)
    w.clock.advance(POLL_SECONDS)
    assert w.placed == []
    assert 5 not in w.waiting
    assert w.removed() == [(5, reason)]


def test_item5_modify_is_refused_and_remove_tells_the_owner() -> None:
    w = World()
    w.waiting.wait(w.session, SPEC, 6)
    with pytest.raises(FailedPrecondition):
        w.waiting.check_modify(w.session, 6)
    w.waiting.check_modify(w.session, 99)  # not a waiting one: the broker judges it
    assert w.waiting.remove(w.session, 6)
    assert not w.waiting.remove(w.session, 6)
    assert w.removed() == [(6, "client")]
    assert w.clock.pending() == w.others
    w.waiting.wait(w.session, SPEC, 7)
    w.waiting.close()
    assert 7 not in w.waiting
    assert w.clock.pending() == w.others
