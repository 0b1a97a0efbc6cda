"""BpfNotifyMechanism on real processes (issue 11): exact values at the trap, no ptrace.

Items: 1 (every write of a tight loop, in order, exact values; tagged sequences of
8 threads born after arming), 5 (an equals filter in the kernel: one record,
every hit counted).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

import pytest
from native_support import require_native
from perf_support import need_kernel_perf, perf_fds

from hwbkptd.arch.bpf.mechanism import BpfNotifyMechanism
from hwbkptd.arch.bpf.pipe import HitPipe, probe_bpf
from hwbkptd.core.mechanism import HitReport, Refusal, SlotEntry, SlotWrite
from hwbkptd.core.model import Access, Chunk, Filter

pytestmark = [pytest.mark.native]

POOL = "dr"
Table = Mapping[str, tuple[SlotEntry | None, ...]]


def table(address: int) -> Table:
    entry = SlotEntry(Chunk(POOL, address, 8, Access.WRITE), regions=((address, 8),))
    return {POOL: (entry, None, None, None)}


def word(data: bytes) -> int:
    return int.from_bytes(data, "little")


class Sink:
    def __init__(self, mech: BpfNotifyMechanism) -> None:
        self.mech = mech
        self.hits: list[HitReport] = []
        self.lost = 0
        self.newborn_table: Table | None = None
        self.refusals: list[Refusal] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    def on_hits(self, hits: Sequence[HitReport]) -> None:
        self.hits.extend(hits)
        self._changed.set()

    def on_hits_lost(self, tid: int, count: int) -> None:
        self.lost += count
        self._changed.set()

    def on_thread_started(self, pid: int, tid: int) -> None:
        if self.newborn_table is not None:
            task = asyncio.get_running_loop().create_task(self._apply(pid, tid))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _apply(self, pid: int, tid: int) -> None:
        assert self.newborn_table is not None
        self.refusals.extend(await self.mech.apply([SlotWrite(pid, tid, 1, self.newborn_table)]))

    def on_thread_exited(self, pid: int, tid: int, exit_code: int) -> None:
        self._changed.set()

    def on_process_exited(self, pid: int, exit_code: int) -> None:
        self._changed.set()

    def on_process_exec(self, pid: int) -> None:
        pass

    def on_refusals(self, refusals: Sequence[Refusal]) -> None:
        self.refusals.extend(refusals)

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 20.0) -> None:
        async with asyncio.timeout(seconds):
            while not predicate():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await self._changed.wait()


@contextlib.asynccontextmanager
async def started(ring_bytes: int = 0) -> AsyncIterator[tuple[BpfNotifyMechanism, Sink]]:
    need_kernel_perf(free_slot=False, kernel_addresses=False)
    ok, why = probe_bpf()
    if not ok:
        require_native(f"BPF unavailable: {why}")
    baseline = perf_fds()
    mech = BpfNotifyMechanism(pipe=HitPipe(ring_bytes=ring_bytes) if ring_bytes else None)
    sink = Sink(mech)
    mech.start(sink)
    try:
        yield mech, sink
    finally:
        await mech.close()
        assert mech.open_fds() == 0
        assert perf_fds() == baseline


async def spawn(*argv: str) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    address = int((await proc.stdout.readline()).decode(), 16)
    return proc, address


async def go_and_wait(proc: asyncio.subprocess.Process, *, ended: bool = True) -> None:
    """Start the writes and wait for "done" (and, when ``ended``, for the exit)."""
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(b"g")
    await proc.stdin.drain()
    async with asyncio.timeout(60):
        assert (await proc.stdout.readline()).startswith(b"done")
        if ended:
            assert await proc.wait() == 0


async def arm_and_go(
    mech: BpfNotifyMechanism, proc: asyncio.subprocess.Process, address: int
) -> None:
    """Follow the process, watch ``address`` in it (slot 1), start the writes."""
    await mech.watch(proc.pid, report_threads=False)
    assert not await mech.apply([SlotWrite(proc.pid, proc.pid, 1, table(address))])
    assert proc.stdin is not None
    proc.stdin.write(b"g")
    await proc.stdin.drain()


async def wait_for_hits(mech: BpfNotifyMechanism, sink: Sink, n: int) -> None:
    """Until ``n`` hits came; else a failure that says where the others went."""
    try:
        await sink.wait_for(lambda: len(sink.hits) >= n)
    except TimeoutError:
        per_tid = collections.Counter(h.tid for h in sink.hits)
        raise AssertionError(
            f"{len(sink.hits)} of {n} hits, {sink.lost} lost, refusals {sink.refusals}, "
            f"per thread {dict(per_tid)}, {mech.stats}, {mech.bpf_records} records"
        ) from None


async def test_item1_tight_loop_every_write_exact_in_order(native_bins: dict[str, str]) -> None:
    n = 100_000
    async with started() as (mech, sink):
        proc, address = await spawn(native_bins["writer"], str(n))
        try:
            await mech.watch(proc.pid, report_threads=False)
            assert not await mech.apply([SlotWrite(proc.pid, proc.pid, 1, table(address))])
            await go_and_wait(proc)
            await wait_for_hits(mech, sink, n)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert sink.lost == 0
        assert len(sink.hits) == n
        assert [word(h.values[0]) for h in sink.hits] == list(range(1, n + 1))
        assert not any(h.values_late for h in sink.hits)
        assert {h.tid for h in sink.hits} == {proc.pid}
        assert all(h.address == address and h.cpu >= 0 for h in sink.hits)
        assert mech.bpf_records == n


async def tagged_hits(
    argv: Sequence[str], address_out: list[int], k: int, n: int
) -> dict[int, list[int]]:
    """Run the tagged writer (``argv``) under the mechanism; each thread's hit values."""
    async with started() as (mech, sink):
        proc, address = await spawn(*argv)
        address_out.append(address)
        try:
            sink.newborn_table = table(address)
            await mech.watch(proc.pid, report_threads=True)
            assert not await mech.apply([SlotWrite(proc.pid, proc.pid, 1, table(address))])
            await go_and_wait(proc, ended=False)
            await wait_for_hits(mech, sink, k * n)
            assert proc.stdin is not None
            proc.stdin.close()
            assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert sink.lost == 0
        assert not sink.refusals
        assert len(sink.hits) == k * n
        by_tid: dict[int, list[int]] = collections.defaultdict(list)
        for hit in sink.hits:
            by_tid[hit.tid].append(word(hit.values[0]))
        assert len(by_tid) == k
        return by_tid


def own_tag(values: list[int]) -> int:
    return collections.Counter(v >> 32 for v in values).most_common(1)[0][0]


async def test_item1_eight_threads_tagged_sequences_on_one_cpu(
    native_bins: dict[str, str],
) -> None:
    """Threads born after arming; every hit's value is its thread's own write, in order.

    On one CPU: the program reads the variable in the trapping thread right after its
    store, and nothing else can run in between.
    """
    k, n = 8, 20_000
    by_tid = await tagged_hits(
        ["taskset", "-c", "0", native_bins["tagged"], str(k), str(n)], [], k, n
    )
    tags = set()
    for values in by_tid.values():
        tag = own_tag(values)
        tags.add(tag)
        assert values == [tag << 32 | i for i in range(1, n + 1)]
    assert tags == set(range(1, k + 1))


async def test_item1_eight_threads_on_two_cpus_every_write_caught(
    native_bins: dict[str, str],
) -> None:
    """On two CPUs every write is still a hit of its thread, with an exact count; a value
    may be the other CPU's store, made between this store and the program's read (a
    shared variable read after the trap cannot tell), never an invented one.

    A thread's own values come in the order it wrote them, but for a rare stale read of
    this machine: about once in 10 to 35 runs, one record's value is what the variable
    held about 2 ms before, while the record itself is whole (its old value is the
    previous record's value, its time in order) and the thread's own read right after
    the trap sees its store (docs/decisions.md "Stale reads at the trap"). Such a read
    is one isolated value; at most ``STALE_READS_ALLOWED`` of them in a run, each
    printed, and without them the sequence is strictly increasing. Hits moved out of
    order by the broker would be runs of values, and fail.
    """
    k, n = 8, 20_000
    by_tid = await tagged_hits([native_bins["tagged"], str(k), str(n)], [], k, n)
    written = {t << 32 | i for t in range(1, k + 1) for i in range(1, n + 1)}
    stale: list[tuple[int, int, int]] = []
    for tid, values in by_tid.items():
        tag = own_tag(values)
        own = [v for v in values if v >> 32 == tag]
        kept, removed = split_isolated_stale_reads(own)
        stale += [(tid, v & 0xFFFFFFFF, len(own)) for v in removed]
        assert all(a < b for a, b in itertools.pairwise(kept))
        assert set(values) <= written
    if stale:
        print(f"stale reads at the trap (tid, sequence number, own values): {stale}")
    assert len(stale) <= STALE_READS_ALLOWED


#: Isolated stale reads tolerated in one run of 160,000 hits (seen: at most one).
STALE_READS_ALLOWED = 2


def split_isolated_stale_reads(own: list[int]) -> tuple[list[int], list[int]]:
    """``own`` split into the sequence and each value not above the one before it whose
    next value continues the sequence (a single stale read, not a run out of order)."""
    kept: list[int] = []
    removed: list[int] = []
    for i, v in enumerate(own):
        after = own[i + 1] if i + 1 < len(own) else None
        if kept and v <= kept[-1] and (after is None or after > kept[-1]):
            removed.append(v)
        else:
            kept.append(v)
    return kept, removed


@pytest.mark.soak
@pytest.mark.skipif(os.environ.get("HWBKPT_SOAK") != "1", reason="soak: set HWBKPT_SOAK=1")
async def test_item1_two_cpus_strict_order_twenty_runs(native_bins: dict[str, str]) -> None:
    """The hard case without the tolerance: every thread's own values strictly in order,
    20 runs. On this machine it fails about 1 run in 10 to 35 (the stale reads at the
    trap, docs/decisions.md); the failure says how many runs had one."""
    k, n = 8, 20_000
    bad_runs = 0
    for _ in range(20):
        by_tid = await tagged_hits([native_bins["tagged"], str(k), str(n)], [], k, n)
        for values in by_tid.values():
            tag = own_tag(values)
            own = [v for v in values if v >> 32 == tag]
            if not all(a < b for a, b in itertools.pairwise(own)):
                bad_runs += 1
                break
    assert bad_runs == 0, f"{bad_runs} of 20 runs had a thread's own values out of order"


async def test_item1_no_thread_is_ever_stopped(native_bins: dict[str, str]) -> None:
    """The target is never traced: TracerPid stays 0 while hits flow."""
    async with started() as (mech, sink):
        proc, address = await spawn(native_bins["writer"], "2000", "200")
        try:
            await arm_and_go(mech, proc, address)
            await sink.wait_for(lambda: len(sink.hits) >= 10)
            status = await asyncio.to_thread(Path(f"/proc/{proc.pid}/status").read_text)
            assert "TracerPid:\t0" in status
            started_at = time.monotonic()
            async with asyncio.timeout(30):
                await proc.wait()
            assert time.monotonic() - started_at < 30
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_item6_a_steady_rate_after_a_stall_is_woken_per_record_again(
    native_bins: dict[str, str],
) -> None:
    """A stall of the loop (here 60 ms; a burst or a binary read does the same) leaves more
    than BUSY_RECORDS in the ring: the reads go on a timer. At a steady 2,000 hits/s each
    1 ms tick still finds two records; the wake-ups per record must come back while the
    target writes at that rate (they used to stay off until it stopped: latency about
    1 ms instead of 0.3)."""
    async with started() as (mech, sink):
        proc, address = await spawn(native_bins["paced"], "8000", "2000")
        try:
            await arm_and_go(mech, proc, address)
            await sink.wait_for(lambda: len(sink.hits) >= 20)
            assert not mech.batched
            assert mech.bpf_wakeups == 0
            time.sleep(0.06)  # noqa: ASYNC251 (the loop is held: records pile up in the ring)
            await sink.wait_for(lambda: mech.bpf_wakeups > 0, seconds=5)
            await sink.wait_for(lambda: not mech.batched, seconds=5)
            back_at = len(sink.hits)
            # Measured: back after 1 or 2 ticks; it used to take hundreds, or never.
            assert mech.bpf_wakeups <= 20, (
                f"per record again only after {mech.bpf_wakeups} ticks, {back_at} of 8,000 hits"
            )
            await sink.wait_for(lambda: len(sink.hits) >= back_at + 200)
            # Still per record: hits flow with no tick reading them.
            ticks = mech.bpf_wakeups
            await sink.wait_for(lambda: len(sink.hits) >= back_at + 400)
            assert mech.bpf_wakeups == ticks
            await go_and_wait(proc, ended=False)
            async with asyncio.timeout(30):
                assert await proc.wait() == 0
            await sink.wait_for(lambda: len(sink.hits) >= 8000)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert [word(h.values[0]) for h in sink.hits] == list(range(1, 8001))


async def test_item1_records_a_full_ring_drops_are_all_reported(
    native_bins: dict[str, str],
) -> None:
    """A ring of 16 KiB (about 110 records) cannot hold a tight loop's burst: every write
    is either a hit or counted lost, never silently gone."""
    n = 100_000
    async with started(ring_bytes=16 * 1024) as (mech, sink):
        proc, address = await spawn(native_bins["writer"], str(n))
        try:
            await mech.watch(proc.pid, report_threads=False)
            assert not await mech.apply([SlotWrite(proc.pid, proc.pid, 1, table(address))])
            await go_and_wait(proc)
            await sink.wait_for(lambda: len(sink.hits) + sink.lost >= n)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert sink.lost > 0
        assert len(sink.hits) + sink.lost == n
        values = [word(h.values[0]) for h in sink.hits]
        assert values == sorted(values)


async def test_item5_equals_in_the_kernel_one_record_every_hit_counted(
    native_bins: dict[str, str],
) -> None:
    n, match = 200_000, 123_456
    async with started() as (mech, sink):
        proc, address = await spawn(native_bins["writer"], str(n))
        entry = SlotEntry(
            Chunk(POOL, address, 8, Access.WRITE),
            regions=((address, 8),),
            value_filters=(Filter(equals=match.to_bytes(8, "little")),),
        )
        try:
            await mech.watch(proc.pid, report_threads=False)
            write = SlotWrite(proc.pid, proc.pid, 1, {POOL: (entry, None, None, None)})
            assert not await mech.apply([write])
            await go_and_wait(proc)
            await sink.wait_for(lambda: sum(h.skipped + (not h.count_only) for h in sink.hits) >= n)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert mech.bpf_records == 1  # one record left the kernel
        reported = [h for h in sink.hits if not h.count_only]
        assert [(word(h.values[0]), word(h.old_values[0])) for h in reported] == [
            (match, match - 1)
        ]
        # Its hit count is exact: the hits filtered out before it were counted first (by
        # count-only reports while they came, the rest by the record itself).
        at = sink.hits.index(reported[0])
        assert sum(h.skipped for h in sink.hits[: at + 1]) == match - 1
        # Every hit counted: the reported one, the ones skipped before it, and the
        # count-only reports of the ones after.
        assert sum(h.skipped for h in sink.hits) + len(reported) == n
