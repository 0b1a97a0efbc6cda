"""Hits to their owners: attribution by generation, filters, halts, lost hits."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from hwbkptd.core.arbiter import Arbiter
from hwbkptd.core.broker_types import BreakpointSpec, Identity
from hwbkptd.core.clock import ManualClock
from hwbkptd.core.events import HaltTimeout, Hit, HitsDropped
from hwbkptd.core.mechanism import HitReport
from hwbkptd.core.model import Access, Action, Chunk, Filter, Scope
from hwbkptd.core.records import RequestBook, new_record
from hwbkptd.core.routing import HitRouter
from hwbkptd.core.sessions import Session, SessionTable

PID = TID = 100
CHUNK = Chunk("dr", 0x1000, 8, Access.WRITE)


class Rig:
    def __init__(self, halt_timeout: float = 10.0) -> None:
        self.arbiter = Arbiter({"dr": 4})
        self.arbiter.add_thread(PID, TID)
        self.records = RequestBook()
        #: The router's clock only: the sessions' lease timers are not under test here.
        self.clock = ManualClock()
        self.sessions = SessionTable(ManualClock(), lambda s: None)
        self.stopped: list[int] = []
        self.resumed: list[int] = []
        self.router = HitRouter(
            arbiter=self.arbiter,
            records=self.records,
            sessions=self.sessions,
            clock=self.clock,
            halt_timeout=halt_timeout,
            stop_request=self.stop,
            resume=self.resume,
            spawn=self.spawn,
        )
        self.tasks: list[asyncio.Task[None]] = []

    def stop(self, rid: int) -> None:
        self.stopped.append(rid)
        self.records.pop(rid)
        self.arbiter.remove_request(rid)

    async def resume(self, tid: int) -> None:
        self.resumed.append(tid)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.ensure_future(work))

    def session(self, name: str) -> Session:
        return self.sessions.open(
            name, identity=Identity(), lease_seconds=100, hit_buffer=100, retention=100
        )

    def add(self, rid: int, session: Session, **kw: Any) -> None:
        spec = BreakpointSpec(Scope.PROCESS, 0x1000, 8, Access.WRITE, pid=PID, **kw)
        record = new_record(rid, session, spec, (CHUNK,), read_emulated=True, value=b"\x00" * 8)
        self.arbiter.add_request(record.request)
        self.records.add(record)

    def report(self, halted: bool = False, generation: int | None = None) -> HitReport:
        table = self.arbiter.table(TID)
        index = next(i for i, e in enumerate(table.pools["dr"]) if e is not None)
        holders = table.pools["dr"][index].holders  # type: ignore[union-attr]
        return HitReport(
            pid=PID,
            tid=TID,
            pool="dr",
            index=index,
            generation=table.generation if generation is None else generation,
            ip=1,
            address=0x1000,
            time_ns=7,
            access=Access.WRITE,
            values=tuple(bytes([n]) * 8 for n in range(1, len(holders) + 1)),
            halted=halted,
        )


def hits(session: Session) -> list[tuple[int, Hit]]:
    events = session.log.take(0, 0, limit=1000)
    return [(e.breakpoint_id, e.kind) for e in events if isinstance(e.kind, Hit)]


async def test_a_hit_goes_to_the_holders_of_its_generation_only() -> None:
    rig = Rig()
    a, b = rig.session("A"), rig.session("B")
    rig.add(1, a)
    old = rig.report()
    rig.add(2, b, priority=75)  # shares the slot; the table is rewritten
    rig.router.on_hits([old])
    assert [rid for rid, _ in hits(a)] == [1]
    assert hits(b) == []
    rig.router.on_hits([rig.report()])
    # Holders in rank order: B first; each gets the value of its own region.
    ((rid, hit),) = hits(b)
    assert rid == 2
    assert hit.value == b"\x01" * 8
    assert [h.value for _, h in hits(a)] == [b"\x01" * 8, b"\x02" * 8]


async def test_stop_after_removes_the_request_after_its_last_reported_hit() -> None:
    rig = Rig()
    a = rig.session("A")
    rig.add(1, a, filter=Filter(stop_after=1))
    report = rig.report()
    rig.router.on_hits([report, report])
    assert rig.stopped == [1]
    assert len(hits(a)) == 1


async def test_halt_holds_until_timeout_and_filtered_halts_resume_at_once() -> None:
    rig = Rig(halt_timeout=30.0)
    a = rig.session("A")
    rig.add(1, a, action=Action.HALT)
    rig.router.on_hits([rig.report(halted=True)])
    rig.router.on_hits([rig.report(halted=True)])  # held already: the first deadline stands
    assert rig.router.halts.held_by(a.id) == (TID,)
    assert (rig.clock.pending(), rig.clock.next_deadline()) == (1, rig.clock.monotonic() + 30)
    rig.clock.advance(29.5)
    assert rig.tasks == []
    assert TID in rig.router.halts
    rig.clock.advance(0.5)
    await asyncio.gather(*rig.tasks)
    assert rig.resumed == [TID]
    assert TID not in rig.router.halts
    timeouts = [e.kind for e in a.log.take(0, 0) if isinstance(e.kind, HaltTimeout)]
    assert timeouts == [HaltTimeout(tid=TID, seconds=30.0)]

    rig2 = Rig()
    b = rig2.session("B")
    rig2.add(1, b, action=Action.HALT, filter=Filter(ignore_first=1))
    rig2.router.on_hits([rig2.report(halted=True)])
    await asyncio.gather(*rig2.tasks)
    assert rig2.resumed == [TID]
    assert TID not in rig2.router.halts
    assert rig2.clock.pending() == 0


async def test_a_released_halt_cancels_its_timeout() -> None:
    rig = Rig(halt_timeout=30.0)
    a = rig.session("A")
    rig.add(1, a, action=Action.HALT)
    rig.router.on_hits([rig.report(halted=True)])
    assert rig.router.halts.release(TID, a.id)
    assert rig.clock.pending() == 0
    rig.clock.advance(60)
    assert rig.tasks == []
    assert not any(isinstance(e.kind, HaltTimeout) for e in a.log.take(0, 0))


async def test_lost_hits_are_told_once_per_session_holding_a_slot() -> None:
    rig = Rig()
    a, b = rig.session("A"), rig.session("B")
    rig.add(1, a)
    rig.add(2, a, priority=30)
    rig.add(3, b)
    rig.router.on_hits_lost(TID, 4)
    for s in (a, b):
        assert [e.kind for e in s.log.take(0, 0)] == [HitsDropped(4)]
