"""hwbkptd.arch.native: which mechanism gets which half of a table, with recording fakes.

The real mechanisms are exercised in tests/native and tests/e2e_native; here only the
composite's routing rules: non-stop entries to the non-stop mechanism, the rest to
ptrace, a process followed for non-stop watches only never reaching ptrace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from hwbkptd.arch.native import NativeMechanism, split_write
from hwbkptd.arch.perf.caps import PerfCaps
from hwbkptd.arch.perf.kernel_mechanism import KernelPerfMechanism
from hwbkptd.core.mechanism import MechanismInfo, Refusal, SlotEntry, SlotWrite
from hwbkptd.core.model import Access, Chunk

PID = 100


def entry(address: int, nonstop: bool) -> SlotEntry:
    return SlotEntry(Chunk("dr", address, 8, Access.WRITE), ((address, 8),), nonstop=nonstop)


def table(tid: int, *entries: SlotEntry | None, pid: int = PID, gen: int = 1) -> SlotWrite:
    slots = (*entries, *([None] * (4 - len(entries))))
    return SlotWrite(pid=pid, tid=tid, generation=gen, pools={"dr": slots})


class Recorder:
    """Stands for PtraceMechanism or NonstopMechanism: records what reaches it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.applied: list[SlotWrite] = []
        self.calls: list[tuple[str, Any]] = []
        self.watched: dict[int, bool] = {}

    def info(self) -> MechanismInfo:
        return MechanismInfo(self.name, True)

    def start(self, sink: object) -> None:
        self.calls.append(("start", None))

    async def apply(self, writes: Sequence[SlotWrite]) -> Sequence[Refusal]:
        self.applied.extend(writes)
        return ()

    async def attach(
        self,
        pid: int,
        follow_fork: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> Sequence[int]:
        self.calls.append(("attach", pid))
        return (pid,)

    async def detach(self, pid: int) -> None:
        self.calls.append(("detach", pid))

    async def read_memory(self, pid: int, address: int, length: int) -> bytes:
        self.calls.append(("read", pid))
        return bytes(length)

    async def resume(self, tid: int) -> None: ...

    async def launch(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str, follow_fork: bool = False
    ) -> int:
        return 1

    async def release(self, pid: int) -> None: ...

    async def close(self) -> None:
        self.calls.append(("close", None))

    # the non-stop mechanism's extra calls
    async def watch(self, pid: int, *, report_threads: bool) -> tuple[int, ...]:
        self.watched[pid] = report_threads
        return (pid,)

    def watching(self, pid: int) -> bool:
        return pid in self.watched

    def follows_alone(self, pid: int) -> bool:
        return self.watched.get(pid, False)

    async def unwatch(self, pid: int) -> None:
        self.watched.pop(pid, None)


def caps() -> PerfCaps:
    return PerfCaps(True, True, 2, True, True, False, "fixture")


@pytest.fixture
def parts() -> tuple[NativeMechanism, Recorder, Recorder]:
    ptrace, nonstop = Recorder("ptrace"), Recorder("perf-nonstop")
    c = caps()
    mech = NativeMechanism(
        caps=c,
        kernel=KernelPerfMechanism(caps=c),
        ptrace=ptrace,  # type: ignore[arg-type]
        nonstop=nonstop,  # type: ignore[arg-type]
        load_ptrace=False,
    )
    return mech, ptrace, nonstop


def test_split_keeps_each_half_in_place() -> None:
    a, b = entry(0x1000, False), entry(0x2000, True)
    stopping, watching = split_write(table(7, a, b, None, b))
    assert stopping.pools["dr"] == (a, None, None, None)
    assert watching.pools["dr"] == (None, b, None, b)
    assert (watching.pid, watching.tid, watching.generation) == (PID, 7, 1)


async def test_kernel_entries_of_a_thread_table_reach_no_thread_mechanism(parts: Any) -> None:
    mech, ptrace, nonstop = parts
    kernel = SlotEntry(Chunk("dr", 0xFFFF_FFFF_8200_0000, 8, Access.WRITE), kernel=True)
    a = entry(0x1000, False)
    assert await mech.apply([table(7, kernel, a)]) == []
    # The CPU context's events arm it; the thread's table only reserves the slot.
    assert [w.pools["dr"] for w in ptrace.applied] == [(None, a, None, None)]
    assert nonstop.applied == []


async def test_a_traced_thread_gets_both_halves(parts: Any) -> None:
    mech, ptrace, nonstop = parts
    a, b = entry(0x1000, False), entry(0x2000, True)
    assert await mech.apply([table(7, a, b)]) == []
    assert [w.pools["dr"] for w in ptrace.applied] == [(a, None, None, None)]
    assert [w.pools["dr"] for w in nonstop.applied] == [(None, b, None, None)]
    # Its non-stop entries gone, the non-stop mechanism is told once, then left alone.
    await mech.apply([table(7, a, gen=2)])
    await mech.apply([table(7, a, gen=3)])
    assert [w.generation for w in nonstop.applied] == [1, 2]
    assert [w.generation for w in ptrace.applied] == [1, 2, 3]


async def test_a_nonstop_only_process_never_reaches_ptrace(parts: Any) -> None:
    mech, ptrace, nonstop = parts
    assert await mech.attach(PID, nonstop=True) == (PID,)
    assert nonstop.watched == {PID: True}
    assert ptrace.calls == []
    b = entry(0x2000, True)
    assert await mech.apply([table(PID, b)]) == []
    assert ptrace.applied == []
    await mech.read_memory(PID, 0x2000, 8)
    assert nonstop.calls == [("read", PID)]
    # A stopping entry cannot be armed without ptrace: refused with the reason.
    refusals = await mech.apply([table(PID, b, entry(0x1000, False), gen=2)])
    assert [(r.tid, r.index, r.generation) for r in refusals] == [(PID, 1, 2)]
    assert "non-stop watches only" in refusals[0].reason
    assert ptrace.applied == []


async def test_a_plain_attach_takes_a_nonstop_process_over(parts: Any) -> None:
    mech, ptrace, nonstop = parts
    await mech.attach(PID, nonstop=True)
    await mech.attach(PID)
    assert ptrace.calls == [("attach", PID)]
    assert nonstop.watched == {PID: False}  # ptrace reports the threads now
    await mech.apply([table(PID, entry(0x1000, False))])
    assert len(ptrace.applied) == 1
    await mech.detach(PID)
    assert ptrace.calls[-1] == ("detach", PID)
    assert nonstop.watched == {}


async def test_detaching_a_nonstop_only_process_leaves_ptrace_alone(parts: Any) -> None:
    mech, ptrace, nonstop = parts
    await mech.attach(PID, nonstop=True)
    await mech.detach(PID)
    assert nonstop.watched == {}
    assert ptrace.calls == []
    # The pid is nobody's now: a later stopping request attaches with ptrace.
    await mech.apply([table(PID, entry(0x1000, False))])
    assert len(ptrace.applied) == 1


def test_describe_lists_the_nonstop_mechanism(parts: Any) -> None:
    mech, _, _ = parts
    assert [m.name for m in mech.mechanisms()] == ["ptrace", "perf-kernel", "perf-nonstop"]
