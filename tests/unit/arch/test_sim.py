"""The simulated machine on its own, with a recording sink in place of the broker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from hwbkptd.arch.layouts import parse_layout
from hwbkptd.arch.sim import FIRST_PID, SimMechanism
from hwbkptd.core.errors import FailedPrecondition, InvalidArgument, NotFound
from hwbkptd.core.mechanism import HitReport, ProcessControl, Refusal, SlotEntry, SlotWrite
from hwbkptd.core.model import CPU_CONTEXT, Access, Chunk

KBASE = 0xFFFF_8000_0000_0000


@dataclass
class Sink:
    hits: list[HitReport] = field(default_factory=list)
    log: list[tuple[object, ...]] = field(default_factory=list)

    def on_hits(self, hits: Sequence[HitReport]) -> None:
        self.hits.extend(hits)

    def on_hits_lost(self, tid: int, count: int) -> None:
        self.log.append(("lost", tid, count))

    def on_thread_started(self, pid: int, tid: int) -> None:
        self.log.append(("started", pid, tid))

    def on_thread_exited(self, pid: int, tid: int, exit_code: int) -> None:
        self.log.append(("thread_exited", pid, tid, exit_code))

    def on_process_exited(self, pid: int, exit_code: int) -> None:
        self.log.append(("process_exited", pid, exit_code))

    def on_process_exec(self, pid: int) -> None:
        self.log.append(("exec", pid))

    def on_refusals(self, refusals: Sequence[Refusal]) -> None:
        self.log.append(("refusals", tuple(refusals)))


def make(layout: str = "sim") -> tuple[SimMechanism, Sink]:
    lay = parse_layout(layout)
    sim = SimMechanism(lay.arch, lay.pools)
    sink = Sink()
    sim.start(sink)
    return sim, sink


def entry(address: int, length: int = 8, access: Access = Access.WRITE, **kw: object) -> SlotEntry:
    chunk = Chunk("dr", address, length, access)
    return SlotEntry(chunk, regions=kw.pop("regions", ((address, length),)), **kw)  # type: ignore[arg-type]


def table(pid: int, tid: int, gen: int, *entries: SlotEntry | None) -> SlotWrite:
    slots = list(entries) + [None] * (4 - len(entries))
    return SlotWrite(pid, tid, gen, {"dr": tuple(slots)})


def test_processes_threads_and_their_life_cycle() -> None:
    sim, sink = make()
    pid, tids = sim.spawn_process(3)
    assert pid == FIRST_PID
    assert tids == (pid, pid + 1, pid + 2)
    tid = sim.spawn_thread(pid)
    assert tid == pid + 3
    other, _ = sim.spawn_process()
    assert other == pid + 4
    assert sink.log[:4] == [("started", pid, t) for t in (*tids, tid)]
    sim.end_thread(tids[1])
    assert sink.log[-1] == ("thread_exited", pid, tids[1], 0)
    assert sim.processes()[pid] == (pid, pid + 2, tid)
    sim.end_process(pid, 7)
    assert sink.log[-1] == ("process_exited", pid, 7)
    sim.end_thread(other)  # the last thread takes its process with it
    assert sink.log[-2:] == [("thread_exited", other, other, 0), ("process_exited", other, 0)]
    assert sim.processes() == {}


async def test_a_new_thread_runs_only_once_its_table_arrived() -> None:
    sim, _ = make()
    pid, (tid,) = sim.spawn_process()
    assert sim.starting(tid)
    with pytest.raises(FailedPrecondition, match="not started"):
        sim.touch(pid, tid, 0x1000, Access.WRITE, value=b"\x01")
    await sim.apply([table(pid, tid, 1)])
    assert not sim.starting(tid)
    assert sim.touch(pid, tid, 0x1000, Access.WRITE, value=b"\x01") == []


async def test_unknown_targets_and_bad_ops_are_refused() -> None:
    sim, _ = make()
    pid, (tid,) = sim.spawn_process()
    await sim.apply([table(pid, tid, 1)])
    with pytest.raises(NotFound) as err:
        sim.spawn_thread(4242)
    assert err.value.field == "pid"
    with pytest.raises(NotFound) as err:
        sim.touch(pid, 4242, 0x1000, Access.WRITE)
    assert err.value.field == "tid"
    with pytest.raises(NotFound):
        sim.end_thread(4242)
    with pytest.raises(NotFound):
        sim.end_process(4242)
    with pytest.raises(InvalidArgument):
        sim.spawn_process(0)
    with pytest.raises(InvalidArgument) as bad:
        sim.touch(pid, tid, 0x1000, Access.READ, value=b"\x01")
    assert bad.value.field == "value"
    with pytest.raises(InvalidArgument):
        sim.touch(pid, tid, 0x1000, Access.WRITE, value=b"\x01\x02", size=4)
    with pytest.raises(InvalidArgument):
        sim.touch(pid, tid, 0x1000, Access.READ_WRITE)
    with pytest.raises(InvalidArgument):
        sim.touch(pid, tid, 2**64 - 1, Access.READ, size=2)


def test_unstarted_sim_refuses_to_create_threads() -> None:
    lay = parse_layout("sim")
    with pytest.raises(FailedPrecondition):
        SimMechanism(lay.arch, lay.pools).spawn_process()


async def test_touch_writes_memory_then_reports_each_matching_slot() -> None:
    sim, sink = make()
    pid, (tid,) = sim.spawn_process()
    sim.write_memory(pid, 0x1000, b"\xaa" * 8)
    gen = 5
    await sim.apply(
        [
            table(
                pid,
                tid,
                gen,
                entry(0x1000, regions=((0x1000, 8), (0x1000, 4))),
                entry(0x1004, 4, Access.READ_WRITE),
                entry(0x1000, 1, Access.EXEC),
            )
        ]
    )
    reports = sim.touch(pid, 0, 0x1002, Access.WRITE, value=b"\x01\x02\x03\x04")
    assert sink.hits == reports
    assert [(r.pool, r.index, r.generation) for r in reports] == [("dr", 0, gen), ("dr", 1, gen)]
    first = reports[0]
    assert first.values == (b"\xaa\xaa\x01\x02\x03\x04\xaa\xaa", b"\xaa\xaa\x01\x02")
    assert (first.tid, first.pid, first.address, first.access) == (tid, pid, 0x1002, Access.WRITE)
    assert first.cpu == 0
    assert first.ip != 0
    assert not first.halted
    assert reports[1].values == (b"\x03\x04\xaa\xaa",)
    assert await sim.read_memory(pid, 0x1000, 8) == b"\xaa\xaa\x01\x02\x03\x04\xaa\xaa"
    # A read matches read/write slots only; exec matches exec only.
    assert [r.index for r in sim.touch(pid, tid, 0x1004, Access.READ, size=4)] == [1]
    (hit,) = sim.touch(pid, tid, 0x1000, Access.EXEC, ip=0)
    assert (hit.index, hit.ip, hit.values) == (2, 0x1000, (b"\xaa",))
    # Outside every slot: no hit.
    assert sim.touch(pid, tid, 0x1008, Access.WRITE, value=b"\x00") == []


async def test_kernel_addresses_hit_through_the_thread_or_the_cpu_context_once() -> None:
    sim, _ = make()
    pid, (t1, t2) = sim.spawn_process(2)
    kernel = entry(KBASE + 0x100)
    await sim.apply(
        [
            table(0, CPU_CONTEXT, 3, kernel),
            table(pid, t1, 2, kernel),
            table(pid, t2, 2),
        ]
    )
    (through_thread,) = sim.touch(pid, t1, KBASE + 0x100, Access.WRITE, value=b"\x01")
    assert (through_thread.tid, through_thread.generation) == (t1, 2)
    (through_cpu,) = sim.touch(pid, t2, KBASE + 0x100, Access.WRITE, value=b"\x02")
    assert (through_cpu.tid, through_cpu.generation) == (CPU_CONTEXT, 3)
    # Kernel memory is one space for every process.
    other, _ = sim.spawn_process()
    assert await sim.read_memory(other, KBASE + 0x100, 1) == b"\x02"


async def test_arm64_layout_uses_the_arm64_kernel_range() -> None:
    sim, _ = make("sim:arm64")
    assert sim.kernel_start == 0xFFFF_0000_0000_0000
    assert SimMechanism({"dr": 4}).kernel_start == KBASE
    assert SimMechanism({"exec": 2, "data": 2}).kernel_start == 0xFFFF_0000_0000_0000


async def test_halt_slots_stop_the_thread_until_resume() -> None:
    sim, _ = make()
    pid, (tid,) = sim.spawn_process()
    await sim.apply([table(pid, tid, 1, entry(0x2000, halt=True))])
    (report,) = sim.touch(pid, tid, 0x2000, Access.WRITE, value=b"\x01")
    assert report.halted
    assert sim.halted(tid)
    with pytest.raises(FailedPrecondition, match=f"thread {tid} is halted"):
        sim.touch(pid, tid, 0x2000, Access.WRITE, value=b"\x02")
    await sim.resume(tid)
    assert not sim.halted(tid)
    assert len(sim.touch(pid, tid, 0x2000, Access.WRITE, value=b"\x02")) == 1


async def test_reserved_slots_are_refused_and_not_armed() -> None:
    sim, _ = make()
    pid, (tid,) = sim.spawn_process()
    sim.reserve_external(tid, "dr", 3)
    refusals = await sim.apply([table(pid, tid, 4, entry(0x10), entry(0x20))])
    assert refusals == [Refusal(tid, "dr", 1, 4)]
    armed = sim.table(tid)
    assert armed is not None
    assert armed.pools["dr"][1] is None
    assert sim.touch(pid, tid, 0x20, Access.WRITE, value=b"\x01") == []
    with pytest.raises(InvalidArgument):
        sim.reserve_external(tid, "dr", 5)
    with pytest.raises(InvalidArgument):
        sim.reserve_external(tid, "nope", 1)


async def test_tables_of_gone_threads_are_ignored_and_no_process_control() -> None:
    sim, sink = make()
    assert await sim.apply([table(1, 77, 1, entry(0x10))]) == []
    assert sim.table(77) is None
    # Its processes come from the sim service: it arms slots and controls no process.
    assert not isinstance(sim, ProcessControl)
    pid, _ = sim.spawn_process()
    sim.write_memory(pid, 0x10, b"\x05")
    sim.exec_process(pid)
    assert sink.log[-1] == ("exec", pid)
    assert await sim.read_memory(pid, 0x10, 1) == b"\x00"  # a fresh address space
    info = sim.info()
    assert info.name == "sim"
    assert info.available
    await sim.close()
    assert sim.closed
