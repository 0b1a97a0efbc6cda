"""Samples to HitReports: generation by time, symbols, deferral order (no perf events)."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Sequence

import pytest

from hwbkptd.arch.perf.kallsyms import Kallsyms
from hwbkptd.arch.perf.kernel_delivery import KernelDelivery, KernelSlot, KernelStats
from hwbkptd.arch.perf.percpu import CHAIN_SAMPLE_TYPE, KERNEL_SAMPLE_TYPE
from hwbkptd.arch.perf.ring import RECORD_LOST, RECORD_SAMPLE, SampleFormat
from hwbkptd.core.mechanism import HitReport, Refusal, SlotEntry
from hwbkptd.core.model import CPU_CONTEXT, Access, Chunk

KSYMS = Kallsyms.from_text("ffffffff81000000 T memcpy\nffffffff81000100 T vfs_read\n")
ADDR = 0xFFFFFFFF828C5000
#: CLOCK_REALTIME - CLOCK_MONOTONIC, where a test holds it still.
WALL = 1_700_000_000 * 10**9
MS = 10**6


def sample(eid: int, ip: int, t: int, cpu: int = 1, pid: int = 42) -> bytes:
    body = struct.pack("<QQIIQQII", eid, ip, pid, pid, t, ADDR, cpu, 0)
    return struct.pack("<IHH", RECORD_SAMPLE, 1, 8 + len(body)) + body


def lost(count: int) -> bytes:
    return struct.pack("<IHHQQ", RECORD_LOST, 0, 24, 0, count)


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.hits: list[list[HitReport]] = []

    def on_hits(self, hits: Sequence[HitReport]) -> None:
        self.calls.append(("hits", list(hits)))
        self.hits.append(list(hits))

    def on_hits_lost(self, tid: int, count: int) -> None:
        self.calls.append(("lost", (tid, count)))

    def on_thread_started(self, pid: int, tid: int) -> None: ...

    def on_thread_exited(self, pid: int, tid: int, exit_code: int) -> None: ...

    def on_process_exited(self, pid: int, exit_code: int) -> None: ...

    def on_process_exec(self, pid: int) -> None: ...

    def on_refusals(self, refusals: Sequence[Refusal]) -> None: ...


def slot() -> KernelSlot:
    s = KernelSlot("dr", 2, SlotEntry(Chunk("dr", ADDR, 8, Access.READ_WRITE)))
    s.hold(1000, 5)
    s.hold(2000, 6)
    return s


def test_generation_follows_the_sample_time() -> None:
    s = slot()
    assert [s.generation_at(t) for t in (0, 1000, 1999, 2000, 10**12)] == [5, 5, 5, 6, 6]
    for g in range(7, 20):
        s.hold(g * 1000, g)
    assert len(s.gens) == 8
    assert s.generation_at(0) == s.gens[0]  # older than anything kept: the oldest kept


async def test_samples_become_attributed_symbolized_hits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hwbkptd.arch.perf.kernel_delivery.wall_offset_ns", lambda: WALL)
    stats = KernelStats()
    delivery = KernelDelivery(SampleFormat(KERNEL_SAMPLE_TYPE), stats)
    sink = Sink()
    delivery.start(sink, asyncio.get_running_loop(), KSYMS)
    ids = {77: slot()}
    delivery.take(
        sample(77, 0xFFFFFFFF81000008, 1500)
        + sample(77, 0xFFFFFFFF81000123, 2500)
        + lost(3)
        + sample(99, 0xFFFFFFFF81000008, 2600),  # an id nobody owns
        ids,
        defer=False,
    )
    (kind, hits), (kind2, lost_args) = sink.calls
    assert (kind, kind2, lost_args) == ("hits", "lost", (CPU_CONTEXT, 3))
    assert hits == [
        HitReport(
            42,
            CPU_CONTEXT,
            "dr",
            2,
            5,
            0xFFFFFFFF81000008,
            ADDR,
            WALL + 1500,
            1,
            ip_symbol="memcpy+0x8",
            task_tid=42,
        ),
        HitReport(
            42,
            CPU_CONTEXT,
            "dr",
            2,
            6,
            0xFFFFFFFF81000123,
            ADDR,
            WALL + 2500,
            1,
            ip_symbol="vfs_read+0x23",
            task_tid=42,
        ),
    ]
    assert (stats.samples, stats.lost, stats.unattributed) == (2, 3, 1)


async def test_deferred_hits_come_after_apply_and_before_later_ones() -> None:
    delivery = KernelDelivery(SampleFormat(KERNEL_SAMPLE_TYPE), KernelStats())
    sink = Sink()
    delivery.start(sink, asyncio.get_running_loop(), None)
    ids = {77: slot()}
    delivery.take(sample(77, 1, 1500) + lost(2), ids, defer=True)
    delivery.take(sample(77, 2, 1600), ids, defer=True)
    assert sink.calls == []  # nothing inside the caller's apply()
    delivery.take(sample(77, 3, 2500), ids, defer=False)
    assert [kind for kind, _ in sink.calls] == ["hits", "lost"]
    assert [h.ip for h in sink.hits[0]] == [1, 2, 3]
    assert sink.calls[1][1] == (CPU_CONTEXT, 2)
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert len(sink.calls) == 2
    delivery.take(sample(77, 4, 2600), ids, defer=True)
    await asyncio.sleep(0)
    assert [h.ip for h in sink.hits[-1]] == [4]


async def test_call_chains_parse_and_symbolize_per_ring_format() -> None:
    delivery = KernelDelivery(SampleFormat(KERNEL_SAMPLE_TYPE), KernelStats())
    sink = Sink()
    delivery.start(sink, asyncio.get_running_loop(), KSYMS)
    # PERF_CONTEXT_KERNEL (-128 as u64) marks the kernel part; markers are not frames.
    chain = (2**64 - 128, 0xFFFFFFFF81000008, 0xFFFFFFFF81000104)
    body = struct.pack("<QQIIQQII", 77, 0xFFFFFFFF81000008, 42, 42, 1500, ADDR, 1, 0)
    body += struct.pack(f"<Q{len(chain)}Q", len(chain), *chain)
    record = struct.pack("<IHH", RECORD_SAMPLE, 1, 8 + len(body)) + body
    delivery.take(record, {77: slot()}, defer=False, fmt=SampleFormat(CHAIN_SAMPLE_TYPE))
    (hit,) = sink.hits[0]
    assert hit.call_chain == (0xFFFFFFFF81000008, 0xFFFFFFFF81000104)
    assert hit.call_chain_symbols == ("memcpy+0x8", "vfs_read+0x4")


async def test_item3_kernel_hits_are_stamped_with_wall_clock_time() -> None:
    """perf stamps samples with CLOCK_MONOTONIC (generations are ordered by it); the hit
    carries the wall-clock time of the same instant, not "seconds since boot" as 1970."""
    delivery = KernelDelivery(SampleFormat(KERNEL_SAMPLE_TYPE), KernelStats())
    sink = Sink()
    delivery.start(sink, asyncio.get_running_loop(), None)
    s = slot()
    s.hold(time.monotonic_ns() - 10**9, 7)
    wall_before = time.time_ns()
    mono = time.monotonic_ns()
    wall_after = time.time_ns()
    delivery.take(sample(77, 1, mono), {77: s}, defer=False)
    (hit,) = sink.hits[0]
    assert hit.generation == 7  # attributed by the monotonic time
    # The offset is measured anew per read, exact to well under a microsecond; a
    # millisecond leaves room for a preempted reading (monotonic-as-epoch is 56 years off).
    assert wall_before - MS <= hit.time_ns <= wall_after + MS
