"""Placement to armed slots to events: current tables, refusals, the external retry."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

import pytest

from hwbkptd.arch.layouts import parse_layout
from hwbkptd.arch.sim import SimMechanism
from hwbkptd.core.arbiter import Arbiter
from hwbkptd.core.broker_types import BreakpointSpec, Identity
from hwbkptd.core.clock import ManualClock
from hwbkptd.core.commit import Commit
from hwbkptd.core.events import Restored, StateChanged
from hwbkptd.core.mechanism import Refusal, SlotWrite
from hwbkptd.core.model import Access, Chunk, PendingReason, RequestState, Scope
from hwbkptd.core.records import RequestBook, new_record
from hwbkptd.core.sessions import Session, SessionTable


class Rig:
    def __init__(self, retry: float = 10.0) -> None:
        lay = parse_layout("sim")
        self.arbiter = Arbiter(lay.pools)
        self.sim = SimMechanism(lay.arch, lay.pools)
        self.records = RequestBook()
        self.threads: dict[int, int] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.seen = 0
        #: The commit's clock only: the session's lease timer is not under test here.
        self.clock = ManualClock()
        self.sessions = SessionTable(ManualClock(), lambda s: None)
        self.session: Session = self.sessions.open(
            "A", identity=Identity(), lease_seconds=100, hit_buffer=100, retention=100
        )
        self.commit = Commit(
            arbiter=self.arbiter,
            mechanism=self.sim,
            pools=lay.pools,
            records=self.records,
            threads=self.threads,
            read_value=self.read,
            spawn=self.spawn,
            clock=self.clock,
            retry_seconds=retry,
        )
        self.sim.start(self)  # type: ignore[arg-type]

    async def read(self, spec: BreakpointSpec) -> bytes:
        return await self.sim.read_memory(spec.pid, spec.address, spec.length)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.ensure_future(work))

    def on_thread_started(self, pid: int, tid: int) -> None:
        self.threads[tid] = pid
        self.commit.absorb(self.arbiter.add_thread(pid, tid))

    def add(self, rid: int, pid: int, address: int, value: bytes = b"") -> None:
        spec = BreakpointSpec(Scope.PROCESS, address, 8, Access.WRITE, pid=pid, priority=25)
        chunks = (Chunk("dr", address, 8, Access.WRITE),)
        record = new_record(rid, self.session, spec, chunks, read_emulated=True, value=value)
        delta = self.arbiter.add_request(record.request)
        self.records.add(record)
        self.commit.created(rid, delta)

    def events(self) -> list[object]:
        """The events queued since the last call."""
        batch = self.session.log.take(self.seen, 0, limit=10_000)
        self.seen = batch[-1].seq if batch else self.seen
        return [e.kind for e in batch]


async def test_the_mechanism_always_gets_the_current_table() -> None:
    rig = Rig()
    pid, (tid,) = rig.sim.spawn_process(1)
    for rid in (1, 2, 3):
        rig.add(rid, pid, 0x1000 + 8 * rid)
    await rig.commit.flush()
    armed = rig.sim.table(tid)
    assert armed is not None
    assert armed.generation == rig.arbiter.table(tid).generation
    assert sum(e is not None for e in armed.pools["dr"]) == 3
    states = [k for k in rig.events() if isinstance(k, StateChanged)]
    assert [s.state for s in states] == [RequestState.INSTALLED] * 3


async def test_periodic_retry_takes_back_slots_the_outside_holder_left() -> None:
    rig = Rig(retry=2.0)
    pid, (tid,) = rig.sim.spawn_process(1)
    rig.sim.reserve_external(tid, "dr", 4)
    rig.add(1, pid, 0x1000)
    await rig.commit.flush()
    assert rig.arbiter.state(1) == (RequestState.PENDING, PendingReason.EXTERNAL)
    assert dict(rig.commit.externals) == {(tid, "dr"): 4}
    assert rig.commit.refused(tid)["dr"] == {0}
    assert rig.clock.next_deadline() == rig.clock.monotonic() + 2.0
    rig.events()
    rig.clock.advance(1.5)
    assert rig.tasks == []  # not due yet
    rig.clock.advance(0.5)  # a retry while still held: quiet, and the next one is scheduled
    await asyncio.gather(*rig.tasks)
    assert len(rig.tasks) == 1
    assert rig.events() == []
    assert rig.clock.pending() == 1
    rig.sim.reserve_external(tid, "dr", 0)
    rig.clock.advance(2.0)
    await asyncio.gather(*rig.tasks)
    assert rig.arbiter.state(1) == (RequestState.INSTALLED, PendingReason.NONE)
    assert rig.events() == [
        Restored((tid,)),
        StateChanged(RequestState.INSTALLED, PendingReason.NONE, (tid,), ()),
    ]
    assert rig.commit.externals == {}
    assert rig.clock.pending() == 0  # nothing held outside: no retry runs


async def test_close_cancels_the_retry() -> None:
    rig = Rig(retry=2.0)
    pid, (tid,) = rig.sim.spawn_process(1)
    rig.sim.reserve_external(tid, "dr", 4)
    rig.add(1, pid, 0x1000)
    await rig.commit.flush()
    assert rig.clock.pending() == 1
    rig.commit.close()
    assert rig.clock.pending() == 0
    rig.clock.advance(10)
    assert rig.tasks == []


async def test_late_refusals_use_the_current_table() -> None:
    rig = Rig()
    pid, (tid,) = rig.sim.spawn_process(1)
    for rid in (1, 2):
        rig.add(rid, pid, 0x1000 + 8 * rid)
    await rig.commit.flush()
    generation = rig.arbiter.table(tid).generation
    assert rig.commit.note_refusals([Refusal(tid, "dr", 1, generation)])
    # Two slots were used and one was refused: three are held outside.
    assert rig.commit.externals[(tid, "dr")] == 3
    assert rig.arbiter.state(2)[1] is PendingReason.EXTERNAL
    # Refusals for threads the broker does not trace are ignored.
    assert not rig.commit.note_refusals([Refusal(999, "dr", 0, 1)])
    rig.commit.thread_gone(tid)
    assert rig.commit.externals == {}


def _runs_once_armed(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, tid: int, pid: int, address: int, value: int
) -> None:
    """``tid`` writes ``value`` as soon as it is armed, before its hit reaches the broker
    (what a traced newborn does: the write that arms it lets it run)."""
    apply = rig.sim.apply

    async def arm_then_run(writes: Sequence[SlotWrite]) -> Sequence[Refusal]:
        refusals = await apply(writes)
        if any(w.tid == tid for w in writes):
            rig.sim.write_memory(pid, address, value.to_bytes(8, "little"))
        return refusals

    monkeypatch.setattr(rig.sim, "apply", arm_then_run)


async def test_item2_a_newborn_thread_leaves_the_value_before_its_first_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig()
    pid, _ = rig.sim.spawn_process(1)
    before = (7).to_bytes(8, "little")
    rig.sim.write_memory(pid, 0x1000, before)
    rig.add(1, pid, 0x1000, before)
    await rig.commit.flush()
    newborn = rig.sim.spawn_thread(pid)
    _runs_once_armed(rig, monkeypatch, newborn, pid, 0x1000, 102)
    await rig.commit.flush()
    assert newborn in rig.commit.installed(1)
    # The old value of the newborn's hit is what the broker saw before it: 7, never 102.
    assert rig.records[1].hits.last_value == before


async def test_item2_a_request_armed_again_reads_its_value_before_arming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig()
    pid, (tid,) = rig.sim.spawn_process(1)
    rig.add(1, pid, 0x1000, bytes(8))
    await rig.commit.flush()
    rig.commit.absorb(rig.arbiter.set_external(tid, "dr", 4))
    await rig.commit.flush()
    assert rig.commit.installed(1) == frozenset()
    missed = (5).to_bytes(8, "little")
    rig.sim.write_memory(pid, 0x1000, missed)  # while it had no slot
    rig.commit.absorb(rig.arbiter.set_external(tid, "dr", 0))
    _runs_once_armed(rig, monkeypatch, tid, pid, 0x1000, 9)
    await rig.commit.flush()
    assert rig.commit.installed(1) == frozenset({tid})
    assert rig.records[1].hits.last_value == missed
