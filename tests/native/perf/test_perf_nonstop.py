"""NonstopMechanism on real processes and real perf events: no ptrace, the target never stops."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import signal
import statistics
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

import pytest
from native_support import require_native
from perf_support import need_kernel_perf, perf_fds, set_cpu_online

from hwbkptd.arch.perf.nonstop import NonstopMechanism
from hwbkptd.core.errors import NotFound
from hwbkptd.core.mechanism import HitReport, Refusal, SlotEntry, SlotWrite
from hwbkptd.core.model import Access, Chunk

pytestmark = [pytest.mark.native]

POOL = "dr"
Table = Mapping[str, tuple[SlotEntry | None, ...]]


def entry(address: int, access: Access = Access.WRITE) -> SlotEntry:
    return SlotEntry(Chunk(POOL, address, 8, access), regions=((address, 8),), nonstop=True)


def table(*entries: SlotEntry | None) -> Table:
    return {POOL: tuple(entries) + (None,) * (4 - len(entries))}


def value(hit: HitReport) -> int:
    return int.from_bytes(hit.values[0], "little")


def assert_late_values(hits: Sequence[HitReport], n: int) -> None:
    """Hit i (1-based) saw the write of i: its value, read after the access, is i or newer
    (or missing: read after the process exited)."""
    values = [(i, value(h)) for i, h in enumerate(hits, 1) if h.values]
    assert len(values) > n // 2
    assert all(v >= i for i, v in values)
    assert [v for _, v in values] == sorted(v for _, v in values)
    assert all(v <= n for _, v in values)


class Sink:
    """Records everything; applies ``newborn_table`` to each thread it is told was born."""

    def __init__(self, mech: NonstopMechanism) -> None:
        self.mech = mech
        self.hits: list[HitReport] = []
        #: CLOCK_MONOTONIC ns when each hit reached the sink.
        self.received: list[int] = []
        self.lost = 0
        self.started: list[int] = []
        self.exited: list[int] = []
        self.process_exits: list[tuple[int, int]] = []
        self.execs: list[int] = []
        self.refusals: list[Refusal] = []
        self.newborn_table: Table | None = None
        self.newborn_fds: list[int] = []
        self.newborn_refusals: list[Refusal] = []
        #: What a newborn's apply raised (a task's exception would otherwise go unseen).
        self.apply_errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    def _poke(self) -> None:
        self._changed.set()

    def on_hits(self, hits: Sequence[HitReport]) -> None:
        self.hits.extend(hits)
        self.received.extend([time.monotonic_ns()] * len(hits))
        self._poke()

    def on_hits_lost(self, tid: int, count: int) -> None:
        self.lost += count
        self._poke()

    def on_thread_started(self, pid: int, tid: int) -> None:
        self.started.append(tid)
        if self.newborn_table is not None:
            task = asyncio.get_running_loop().create_task(self._apply(pid, tid))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._poke()

    async def _apply(self, pid: int, tid: int) -> None:
        assert self.newborn_table is not None
        try:
            refused = await self.mech.apply([SlotWrite(pid, tid, 1, self.newborn_table)])
        except Exception as exc:
            self.apply_errors.append(exc)
            raise
        # Kept, not asserted here: a failed assertion inside this task would only show
        # as a timeout of whatever waits for ``newborn_fds``.
        self.newborn_refusals.extend(refused)
        self.newborn_fds.append(self.mech.breakpoint_fds())
        self._poke()

    def on_thread_exited(self, pid: int, tid: int, exit_code: int) -> None:
        self.exited.append(tid)
        self._poke()

    def on_process_exited(self, pid: int, exit_code: int) -> None:
        self.process_exits.append((pid, exit_code))
        self._poke()

    def on_process_exec(self, pid: int) -> None:
        self.execs.append(pid)
        self._poke()

    def on_refusals(self, refusals: Sequence[Refusal]) -> None:
        self.refusals.extend(refusals)
        self._poke()

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 5.0) -> None:
        async with asyncio.timeout(seconds):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def tids(self) -> collections.Counter[int]:
        return collections.Counter(h.tid for h in self.hits)


class Target:
    """A C target driven line by line over its stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid

    @classmethod
    async def start(cls, *argv: str) -> Target:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def line(self) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(10):
            raw = await self.proc.stdout.readline()
            if not raw:  # its end: say how it ended (trap_report.h explains a SIGTRAP)
                status = await self.proc.wait()
                assert self.proc.stderr is not None
                said = (await self.proc.stderr.read()).decode(errors="replace").strip()
                raise AssertionError(f"target {self.pid} ended (status {status}): {said!r}")
            return raw.decode().strip()

    async def cmd(self, text: str, answer: bool = True) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.line() if answer else ""

    async def wait(self) -> int:
        async with asyncio.timeout(20):
            return await self.proc.wait()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


@pytest.fixture
async def mech() -> AsyncIterator[tuple[NonstopMechanism, Sink]]:
    async with started() as pair:
        yield pair


@contextlib.asynccontextmanager
async def started(ring_pages: int = 64) -> AsyncIterator[tuple[NonstopMechanism, Sink]]:
    need_kernel_perf(free_slot=False, kernel_addresses=False)
    baseline = perf_fds()
    mech = NonstopMechanism(ring_pages=ring_pages)
    if not mech.info().available:
        require_native(f"perf-nonstop unavailable: {mech.info().reason}")
    sink = Sink(mech)
    mech.start(sink)
    try:
        yield mech, sink
    finally:
        await mech.close()
        assert mech.open_fds() == 0
        assert perf_fds() == baseline


@pytest.fixture
async def threads_target(native_bins: dict[str, str]) -> AsyncIterator[tuple[Target, int]]:
    target = await Target.start(native_bins["nonstop_threads"])
    head = await target.line()
    assert head.startswith("vars ")
    try:
        yield target, int(head.split()[1], 16)
    finally:
        target.kill()
        await target.proc.wait()


def status(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        fields[key] = rest.strip()
    return fields


async def test_single_thread_writer_every_write_is_a_hit(
    mech: tuple[NonstopMechanism, Sink], native_bins: dict[str, str]
) -> None:
    m, sink = mech
    n = 2000
    target = await Target.start(native_bins["writer"], str(n), "200")
    address = int(await target.line(), 16)
    try:
        assert await m.watch(target.pid, report_threads=True) == (target.pid,)
        assert m.watching(target.pid)
        assert m.follows_alone(target.pid)  # issue 10: native asks this, keeps no set
        assert await m.apply([SlotWrite(target.pid, target.pid, 3, table(entry(address)))]) == ()
        assert target.proc.stdin is not None
        target.proc.stdin.write(b"g")
        states: set[str] = set()
        while target.proc.returncode is None:
            try:
                st = status(target.pid)
            except (FileNotFoundError, ProcessLookupError):
                break  # gone (ESRCH: exited, reading its status raced the exit)
            states.add(st["State"].split()[0])
            assert st["TracerPid"] == "0"
            await asyncio.sleep(0.005)
        assert await target.wait() == 0
        await sink.wait_for(lambda: len(sink.hits) >= n and bool(sink.process_exits))
    finally:
        target.kill()
    assert not states & {"t", "T"}, states
    assert len(sink.hits) == n
    assert sink.lost == 0
    assert m.stats.lost == 0
    assert all(h.tid == target.pid and h.pid == target.pid for h in sink.hits)
    assert all((h.pool, h.index, h.generation) == (POOL, 0, 3) for h in sink.hits)
    assert all(h.values_late and h.address == address for h in sink.hits)
    assert_late_values(sink.hits, n)
    assert sink.process_exits == [(target.pid, 0)] or sink.process_exits == [(target.pid, -1)]
    assert not m.watching(target.pid)
    assert not m.follows_alone(target.pid)  # an exited pid may come back as another


async def test_hits_while_gdb_traces_the_target(
    mech: tuple[NonstopMechanism, Sink], native_bins: dict[str, str], tmp_path: Path
) -> None:
    if shutil.which("gdb") is None:
        require_native("gdb is not installed")
    m, sink = mech
    n = 2000
    target = await Target.start(native_bins["writer"], str(n), "1000")
    address = int(await target.line(), 16)
    # gdb sleeps until SIGCHLD: it must not inherit the test process's blocked SIGCHLD.
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    try:
        gdb = await asyncio.create_subprocess_exec(
            "gdb", "-nx", "-batch", "-p", str(target.pid), "-ex", "continue",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    try:
        async with asyncio.timeout(20):
            # Nothing signals a tracer's arrival to a third process: look.
            while status(target.pid)["TracerPid"] == "0":  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert await m.watch(target.pid, report_threads=True) == (target.pid,)
        assert await m.apply([SlotWrite(target.pid, target.pid, 1, table(entry(address)))]) == ()
        assert target.proc.stdin is not None
        target.proc.stdin.write(b"g")
        await target.proc.stdin.drain()
        assert status(target.pid)["TracerPid"] == str(gdb.pid)
        async with asyncio.timeout(30):
            out = (await gdb.communicate())[0].decode()
        assert await target.wait() == 0
        await sink.wait_for(lambda: len(sink.hits) >= n)
    finally:
        target.kill()
        if gdb.returncode is None:
            gdb.send_signal(signal.SIGKILL)
            await gdb.wait()
    assert "exited normally" in out, out
    assert len(sink.hits) == n
    assert sink.lost == 0
    assert_late_values(sink.hits, n)


async def test_threads_born_after_arming_adopt_the_inherited_events(
    mech: tuple[NonstopMechanism, Sink], threads_target: tuple[Target, int]
) -> None:
    m, sink = mech
    target, address = threads_target
    watched = table(entry(address))
    assert await m.watch(target.pid, report_threads=True) == (target.pid,)
    assert await m.apply([SlotWrite(target.pid, target.pid, 1, watched)]) == ()
    fds = m.breakpoint_fds()
    assert fds == len(m.slot_cpus(target.pid, POOL, 0)) > 0
    sink.newborn_table = watched
    k, n = 8, 300
    assert await target.cmd(f"spawn {k}") == f"spawned {k}"
    # Writes start at once: a newborn's hits before its table is applied are kept, not lost.
    assert await target.cmd(f"go {n} 0") == "went"
    await sink.wait_for(lambda: len(sink.hits) >= k * n and len(sink.newborn_fds) == k)
    assert sink.newborn_refusals == []
    assert len(sink.started) == k
    counts = sink.tids()
    assert sorted(counts) == sorted(sink.started)
    assert set(counts.values()) == {n}
    assert sink.lost == 0
    assert m.stats.strays == 0
    # Adoption: the newborns' tables cost no new breakpoint event.
    assert set(sink.newborn_fds) == {fds}
    assert m.breakpoint_fds() == fds
    assert await target.cmd("write 50") == "wrote 50"
    await sink.wait_for(lambda: sink.tids()[target.pid] == 50)
    assert await target.cmd("stop") == "stopped"
    await sink.wait_for(lambda: len(sink.exited) == k)
    assert sorted(sink.exited) == sorted(sink.started)


async def test_threads_keep_their_hits_when_the_creator_moves_on(
    mech: tuple[NonstopMechanism, Sink], threads_target: tuple[Target, int]
) -> None:
    m, sink = mech
    target, address = threads_target
    pid = target.pid
    watched = table(entry(address))
    await m.watch(pid, report_threads=True)
    assert await m.apply([SlotWrite(pid, pid, 1, watched)]) == ()
    sink.newborn_table = watched
    k = 3
    assert await target.cmd(f"spawn {k}") == f"spawned {k}"
    await sink.wait_for(lambda: len(sink.newborn_fds) == k)
    assert sink.newborn_refusals == []
    fds = m.breakpoint_fds()
    # The creator drops the watch; its event stays open for the adopters.
    assert await m.apply([SlotWrite(pid, pid, 2, table())]) == ()
    assert m.breakpoint_fds() == fds
    assert await target.cmd("write 10") == "wrote 10"
    assert await target.cmd("go 20 0") == "went"
    await sink.wait_for(lambda: len(sink.hits) >= k * 20)
    m.drain()
    assert sink.tids()[pid] == 0
    assert m.stats.strays == 10
    # Four new watches on the creator: the lingering event holds one of its registers,
    # so the fourth open fails until the adopters get their own events (re-home).
    spares = [entry(address + 8 * i) for i in range(1, 5)]
    assert await m.apply([SlotWrite(pid, pid, 3, table(*spares))]) == ()
    assert m.stats.rehomed >= 1
    sink.hits.clear()
    assert await target.cmd("go 20 0") == "went"
    assert await target.cmd("spare 4 7") == "wrote 7"
    await sink.wait_for(lambda: len(sink.hits) >= k * 20 + 7)
    m.drain()
    counts = sink.tids()
    assert set(counts) == {*sink.started, pid}
    assert all(counts[t] == 20 for t in sink.started)
    assert counts[pid] == 7
    assert {(h.index, h.generation) for h in sink.hits if h.tid == pid} == {(3, 3)}
    assert sink.lost == 0


async def test_the_original_event_outlives_its_exited_owner(
    mech: tuple[NonstopMechanism, Sink], threads_target: tuple[Target, int]
) -> None:
    """Copies in other threads keep sampling after the thread that opened it has exited."""
    m, sink = mech
    target, address = threads_target
    pid = target.pid
    await m.watch(pid, report_threads=True)
    watched = table(entry(address))
    assert await m.apply([SlotWrite(pid, pid, 1, watched)]) == ()
    fds = m.breakpoint_fds()
    sink.newborn_table = watched
    assert await target.cmd("spawn 2") == "spawned 2"
    assert await target.cmd("handoff") == "handed"  # the main thread, the owner, exits
    await sink.wait_for(lambda: pid in sink.exited and len(sink.newborn_fds) == 3)
    assert sink.newborn_refusals == []
    assert m.breakpoint_fds() == fds  # kept open: the adopters route through it
    assert await target.cmd("go 5 0") == "went"
    await sink.wait_for(lambda: len(sink.hits) >= 10)
    m.drain()
    counts = sink.tids()
    assert len(counts) == 2
    assert set(counts.values()) == {5}
    assert pid not in counts
    assert m.watching(pid)  # the process lives on without its main thread


async def test_exit_and_exec_are_reported(
    mech: tuple[NonstopMechanism, Sink], threads_target: tuple[Target, int]
) -> None:
    m, sink = mech
    target, address = threads_target
    pid = target.pid
    await m.watch(pid, report_threads=True)
    assert await m.apply([SlotWrite(pid, pid, 1, table(entry(address)))]) == ()
    assert await target.cmd("spawn 2") == "spawned 2"
    await sink.wait_for(lambda: len(sink.started) == 2)
    assert await m.watch(pid, report_threads=True) == tuple(sorted([pid, *sink.started]))
    assert await target.cmd("stop") == "stopped"
    await sink.wait_for(lambda: len(sink.exited) == 2)
    assert sorted(sink.exited) == sorted(sink.started)
    await target.cmd("exec", answer=False)
    await sink.wait_for(lambda: sink.execs == [pid])
    assert m.breakpoint_fds() == 0  # the kernel removed them at exec; so did we
    assert await m.watch(pid, report_threads=True) == (pid,)
    assert await target.wait() == 0
    await sink.wait_for(lambda: bool(sink.process_exits))
    assert sink.process_exits[0][0] == pid
    assert sink.process_exits[0][1] in (0, -1)
    assert not m.watching(pid)


async def test_exit_code_and_unknown_pids(
    mech: tuple[NonstopMechanism, Sink], threads_target: tuple[Target, int]
) -> None:
    m, sink = mech
    target, _ = threads_target
    await m.watch(target.pid, report_threads=True)
    await target.cmd("exit 7", answer=False)
    assert await target.wait() == 7
    await sink.wait_for(lambda: bool(sink.process_exits))
    assert sink.process_exits[0][1] in (7, -1)
    with pytest.raises(NotFound):
        await m.watch(target.pid, report_threads=True)
    assert not m.watching(target.pid)


async def test_a_thread_holding_its_own_registers_gets_refusals(
    mech: tuple[NonstopMechanism, Sink], native_bins: dict[str, str]
) -> None:
    m, _sink = mech
    hog = await Target.start(native_bins["nonstop_hog"])
    try:
        ready = (await hog.line()).split()
        if ready[0] != "ready":
            require_native(f"nonstop_hog could not take four slots: {ready}")
        address = int(ready[1], 16)
        await m.watch(hog.pid, report_threads=False)
        fds = m.open_fds()
        refused = await m.apply([SlotWrite(hog.pid, hog.pid, 4, table(entry(address)))])
        assert refused == (Refusal(hog.pid, POOL, 0, 4, "external"),)
        assert m.open_fds() == fds  # nothing left half-open
    finally:
        hog.kill()
        await hog.proc.wait()


async def test_unwatch_closes_everything_and_the_target_lives(
    mech: tuple[NonstopMechanism, Sink], threads_target: tuple[Target, int]
) -> None:
    m, _sink = mech
    target, address = threads_target
    await m.watch(target.pid, report_threads=False)
    assert not m.follows_alone(target.pid)  # followed beside ptrace: not alone
    await m.apply([SlotWrite(target.pid, target.pid, 1, table(entry(address)))])
    assert m.open_fds() > 0
    await m.unwatch(target.pid)
    assert not m.watching(target.pid)
    assert m.breakpoint_fds() == 0
    assert m.tracker_fds() == 0
    assert await target.cmd("write 5") == "wrote 5"
    assert await m.read_memory(target.pid, address, 8) == (5).to_bytes(8, "little")
    with pytest.raises(NotFound):
        await m.watch(os.getpid() + 10**6, report_threads=False)


async def test_a_cpu_coming_back_is_armed_again(
    mech: tuple[NonstopMechanism, Sink],
    threads_target: tuple[Target, int],
    cpu1_hotplug: None,
) -> None:
    m, sink = mech
    target, address = threads_target
    pid = target.pid
    await m.watch(pid, report_threads=True)
    assert await m.apply([SlotWrite(pid, pid, 1, table(entry(address)))]) == ()
    assert 1 in m.slot_cpus(pid, POOL, 0)
    set_cpu_online(False)
    async with asyncio.timeout(10):
        assert await m.wait_cpu_stable()
    assert 1 not in m.slot_cpus(pid, POOL, 0)
    assert await target.cmd("write 10") == "wrote 10"
    await sink.wait_for(lambda: len(sink.hits) == 10)
    set_cpu_online(True)
    async with asyncio.timeout(10):
        assert await m.wait_cpu_stable()
    assert 1 in m.slot_cpus(pid, POOL, 0)
    os.sched_setaffinity(pid, {1})
    assert await target.cmd("write 10") == "wrote 10"
    await sink.wait_for(lambda: len(sink.hits) == 20)
    assert {h.cpu for h in sink.hits[10:]} == {1}
    assert not sink.refusals
    # Threads born after the CPU came back still carry copies for it.
    sink.newborn_table = table(entry(address))
    assert await target.cmd("spawn 1") == "spawned 1"
    try:
        await sink.wait_for(lambda: len(sink.newborn_fds) == 1, seconds=10.0)
    except TimeoutError:
        # Which step did not come: the birth (its FORK record), or its table's apply.
        raise AssertionError(
            f"newborn not armed: started {sink.started}, apply errors {sink.apply_errors}, "
            f"tasks {sorted(os.listdir(f'/proc/{pid}/task'))}, {m.stats}, "
            f"trackers {m.tracker_fds()}, ticking {m.ticking}, batched {m.batched}"
        ) from None
    assert sink.newborn_refusals == []
    assert await target.cmd("go 5 0") == "went"
    await sink.wait_for(lambda: len(sink.hits) == 25)
    assert sink.lost == 0


async def test_a_burst_is_batched_whole_and_a_lone_write_after_it_is_prompt(
    threads_target: tuple[Target, int],
) -> None:
    target, address = threads_target
    pid = target.pid
    # Rings big enough that a busy test machine stalling this loop loses nothing.
    async with started(ring_pages=256) as (m, sink):
        await m.watch(pid, report_threads=False)
        assert await m.apply([SlotWrite(pid, pid, 1, table(entry(address)))]) == ()
        n = 30_000
        assert await target.cmd(f"write {n}") == f"wrote {n}"
        await sink.wait_for(lambda: len(sink.hits) + sink.lost >= n, 20)
        # The events moved to the batched rings on the way; every write came once, in order.
        assert m.stats.moves >= 1
        assert m.stats.batched_samples > 0
        assert (sink.lost, m.stats.lost) == (0, 0)
        assert len(sink.hits) == n
        times = [h.time_ns for h in sink.hits]
        assert times == sorted(set(times))
        assert_late_values(sink.hits, n)
        # The burst over, the events go back to the eager rings and no timer runs.
        async with asyncio.timeout(5):
            while m.batched or m.ticking:  # noqa: ASYNC110 (nothing to wait on)
                await asyncio.sleep(0.01)
        moves = m.stats.moves
        delays: list[float] = []
        for _ in range(5):
            await asyncio.sleep(0.05)
            before = len(sink.hits)
            assert await target.cmd("write 1") == "wrote 1"
            await sink.wait_for(lambda: len(sink.hits) == before + 1)  # noqa: B023
            delays.append((sink.received[-1] - sink.hits[-1].time_ns) / 1e6)
        # Woken by the write itself: about a millisecond here; generous for a loaded machine.
        assert statistics.median(delays) < 10, delays
        assert max(delays) < 50, delays
        assert m.stats.moves == moves  # lone writes move nothing
        async with asyncio.timeout(5):
            while m.ticking:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert not m.batched


async def test_inherited_copies_move_with_their_event(threads_target: tuple[Target, int]) -> None:
    """Only the workers write, through copies of the main thread's events: their samples
    reaching the batched rings shows a copy writes wherever its original event does."""
    target, address = threads_target
    pid = target.pid
    async with started(ring_pages=256) as (m, sink):
        watched = table(entry(address))
        await m.watch(pid, report_threads=True)
        assert await m.apply([SlotWrite(pid, pid, 1, watched)]) == ()
        fds = m.breakpoint_fds()
        sink.newborn_table = watched
        assert await target.cmd("spawn 2") == "spawned 2"
        await sink.wait_for(lambda: len(sink.newborn_fds) == 2)
        assert sink.newborn_refusals == []
        assert m.breakpoint_fds() == fds  # adopted, not opened
        n = 15_000
        assert await target.cmd(f"go {n} 0") == "went"
        await sink.wait_for(lambda: len(sink.hits) + sink.lost >= 2 * n, 20)
        assert sink.lost == 0
        assert sorted(sink.tids().items()) == sorted((t, n) for t in sink.started)
        assert m.stats.moves >= 1
        assert m.stats.batched_samples > n // 2


async def test_every_sample_a_full_ring_drops_is_reported(
    threads_target: tuple[Target, int],
) -> None:
    """The loop stalls through a whole burst: one-page rings overflow, and no record comes
    after the burst to carry the loss. It is still reported, to the sample."""
    target, address = threads_target
    pid = target.pid
    async with started(ring_pages=1) as (m, sink):
        await m.watch(pid, report_threads=False)
        assert await m.apply([SlotWrite(pid, pid, 1, table(entry(address)))]) == ()
        n = 10_000
        assert target.proc.stdin is not None
        target.proc.stdin.write(f"write {n}\n".encode())
        await target.proc.stdin.drain()
        time.sleep(1.0)  # noqa: ASYNC251 (the point: nobody reads the rings)
        assert await target.line() == f"wrote {n}"
        await sink.wait_for(lambda: len(sink.hits) + sink.lost >= n)
        await asyncio.sleep(0.05)
        m.drain()
        assert sink.lost > 0
        assert len(sink.hits) + sink.lost == n
        assert m.stats.lost == sink.lost
