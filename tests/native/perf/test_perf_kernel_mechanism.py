"""KernelPerfMechanism against real perf breakpoint events on this machine (root)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from native_support import require_native
from perf_support import (
    RecordingSink,
    perf_fds,
    set_cpu_online,
    start_hog,
    stop_hog,
    touch_kernel,
)

from hwbkptd.arch.linux.perf_event import HW_BREAKPOINT_RW, breakpoint_attr, perf_event_open
from hwbkptd.arch.perf.caps import KERNEL_EXEC_REFUSED
from hwbkptd.arch.perf.kallsyms import Kallsyms
from hwbkptd.arch.perf.kernel_mechanism import KernelPerfMechanism
from hwbkptd.core.errors import FailedPrecondition
from hwbkptd.core.mechanism import SlotEntry, SlotWrite
from hwbkptd.core.model import CPU_CONTEXT, Access, Chunk

pytestmark = [pytest.mark.native, pytest.mark.usefixtures("kernel_perf")]

POOL = "dr"
KSYMS = Kallsyms.load()


def table(generation: int, *chunks: Chunk | None) -> list[SlotWrite]:
    slots = tuple(SlotEntry(c) if c is not None else None for c in chunks)
    slots += (None,) * (4 - len(slots))
    return [SlotWrite(pid=0, tid=CPU_CONTEXT, generation=generation, pools={POOL: slots})]


def cpu_idle_ticks() -> dict[int, int]:
    ticks: dict[int, int] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks[int(name[3:])] = int(fields[3])
    return ticks


async def wait_for_idle_hits(sink: RecordingSink) -> None:
    """init_stack is CPU 0's idle stack: hits come whenever CPU 0 idles.

    A hit must come within a second of CPU 0 idling. When something else keeps
    CPU 0 fully busy (another test run, a benchmark), the premise is missing:
    wait a little for an idle moment, then give up saying so.
    """
    idle_before = cpu_idle_ticks()[0]
    try:
        await sink.wait_for(lambda: len(sink.hits) >= 1, seconds=1.0)
        return
    except TimeoutError:
        idle = cpu_idle_ticks()[0] - idle_before
        assert idle == 0, f"no hit within a second although CPU 0 idled {idle} ticks"
    try:
        await sink.wait_for(lambda: len(sink.hits) >= 1, seconds=5.0)
    except TimeoutError:
        idle = cpu_idle_ticks()[0] - idle_before
        assert idle == 0, f"no hit although CPU 0 idled {idle} ticks"
        require_native("CPU 0 never idled for 6 s (something else keeps it busy)")


def watch(symbol: str, access: Access = Access.READ_WRITE, length: int = 8) -> Chunk:
    return Chunk(POOL, KSYMS.resolve(symbol), length, access)


@pytest.fixture
async def mech() -> AsyncIterator[tuple[KernelPerfMechanism, RecordingSink]]:
    baseline = perf_fds()
    m = KernelPerfMechanism(kallsyms=KSYMS)
    sink = RecordingSink()
    m.start(sink)
    try:
        yield m, sink
    finally:
        await m.close()
    assert perf_fds() == baseline, "perf descriptors leaked"


async def test_init_stack_watch_reports_symbolized_hits_within_a_second(
    mech: tuple[KernelPerfMechanism, RecordingSink],
) -> None:
    m, sink = mech
    baseline = perf_fds()
    chunk = watch("init_stack")
    assert chunk.address == KSYMS.resolve("__start_init_stack")
    assert await m.apply(table(1, chunk)) == ()
    assert m.armed_cpus(POOL, 0) == m.online_cpus
    assert m.open_fds() == 2 * len(m.online_cpus)  # one event and one ring per CPU
    assert perf_fds() > baseline
    await wait_for_idle_hits(sink)
    for hit in sink.hits:
        assert (hit.tid, hit.pool, hit.index, hit.generation) == (CPU_CONTEXT, POOL, 0, 1)
        assert hit.address == chunk.address
        assert hit.cpu in m.online_cpus
        assert hit.values == ()
        assert hit.access is None
        assert hit.ip >= 0xFFFF_8000_0000_0000
        name, _, off = hit.ip_symbol.partition("+0x")
        assert KSYMS.resolve(name) + int(off, 16) == hit.ip
    # Removed cleanly: every descriptor closed, nothing more arrives.
    assert await m.apply(table(2)) == ()
    removed = time.monotonic_ns()
    assert m.open_fds() == 0
    assert perf_fds() == baseline
    await asyncio.sleep(0.3)
    assert all(hit.time_ns < removed for hit in sink.hits)


async def test_hits_are_attributed_to_the_generation_they_happened_under(
    mech: tuple[KernelPerfMechanism, RecordingSink], native_bins: dict[str, str], btf: Path
) -> None:
    m, sink = mech
    chunk = watch("__start_BTF")
    assert await m.apply(table(1, chunk)) == ()
    before = perf_fds()
    # The loop is blocked while the kernel is touched: the samples wait in the ring
    # while generation 2 is applied, and must still count as generation 1's.
    touch_kernel(native_bins, 0, 10)
    assert await m.apply(table(2, chunk)) == ()
    assert perf_fds() == before, "an unchanged slot must keep its events"
    await sink.wait_for(lambda: len(sink.hits) >= 80)
    assert {h.generation for h in sink.hits} == {1}
    for hit in sink.hits:
        name, _, off = hit.ip_symbol.partition("+0x")
        assert KSYMS.resolve(name) + int(off, 16) == hit.ip
    touch_kernel(native_bins, 0, 10)
    await sink.wait_for(lambda: len(sink.hits) >= 160)
    assert {h.generation for h in sink.hits[80:]} == {2}
    assert all(h.pid != os.getpid() for h in sink.hits)  # the toucher, not the broker


async def test_a_changed_slot_is_rewritten_and_the_old_address_stops(
    mech: tuple[KernelPerfMechanism, RecordingSink], native_bins: dict[str, str], btf: Path
) -> None:
    m, sink = mech
    btf_chunk = watch("__start_BTF")
    assert await m.apply(table(1, btf_chunk, watch("init_stack"))) == ()
    assert await m.apply(table(2, watch("init_stack+0x40"), watch("init_stack"))) == ()
    assert m.armed_cpus(POOL, 0) == m.online_cpus
    m.drain()
    await asyncio.sleep(0)  # let the deferred delivery run
    seen = len(sink.hits)
    touch_kernel(native_bins, 0, 10)
    m.drain()
    assert all(h.address != btf_chunk.address for h in sink.hits[seen:])


async def test_lost_samples_are_counted_exactly(native_bins: dict[str, str], btf: Path) -> None:
    m = KernelPerfMechanism(kallsyms=KSYMS, ring_pages=1)
    sink = RecordingSink()
    m.start(sink)
    chunk = watch("__start_BTF")
    counter = -1
    try:
        assert await m.apply(table(1, chunk)) == ()
        # An independent counting event on the same address tells how many traps happened.
        attr = breakpoint_attr(chunk.address, 8, HW_BREAKPOINT_RW, exclude_user=True)
        counter = perf_event_open(attr, -1, 1)
        # The loop is blocked: a one-page ring overflows and the kernel counts the rest.
        touch_kernel(native_bins, 1, 500)
        m.drain()
        # The kernel writes its LOST record once there is room again, before the next sample.
        touch_kernel(native_bins, 1, 1)
        m.drain()
        await asyncio.sleep(0)
        traps = ctypes.c_uint64.from_buffer_copy(os.read(counter, 8)).value
        on_cpu1 = sum(1 for h in sink.hits if h.cpu == 1)
        assert sink.lost > 0
        assert m.stats.lost == sink.lost
        assert on_cpu1 + sink.lost == traps == 501 * 8
    finally:
        if counter >= 0:
            os.close(counter)
        await m.close()


@pytest.mark.parametrize("mode", ["cpu", "task"])
async def test_slots_held_outside_give_an_external_refusal_until_released(
    mech: tuple[KernelPerfMechanism, RecordingSink], native_bins: dict[str, str], mode: str
) -> None:
    m, _sink = mech
    baseline = perf_fds()
    hog = await start_hog(native_bins, mode)
    try:
        refusals = await m.apply(table(1, watch("init_stack")))
        assert [(r.tid, r.pool, r.index, r.generation, r.reason) for r in refusals] == [
            (CPU_CONTEXT, POOL, 0, 1, "external")
        ]
        assert m.armed_cpus(POOL, 0) == frozenset()
        assert perf_fds() == baseline
    finally:
        await stop_hog(hog)
    assert await m.apply(table(2, watch("init_stack"))) == ()
    assert m.armed_cpus(POOL, 0) == m.online_cpus


async def test_all_or_nothing_when_one_cpu_is_full(
    mech: tuple[KernelPerfMechanism, RecordingSink], native_bins: dict[str, str]
) -> None:
    m, _sink = mech
    if len(m.online_cpus) < 2 or 1 not in m.online_cpus:
        pytest.skip("needs CPUs 0 and 1 online")
    baseline = perf_fds()
    hog = await start_hog(native_bins, "cpu", "4", "1")
    try:
        # CPU 0 has room, CPU 1 has none: the event opened on CPU 0 must be closed again.
        refusals = await m.apply(table(1, watch("init_stack")))
        assert [r.reason for r in refusals] == ["external"]
        assert perf_fds() == baseline
    finally:
        await stop_hog(hog)


async def test_kernel_exec_is_refused_from_the_cached_capability(
    mech: tuple[KernelPerfMechanism, RecordingSink],
) -> None:
    m, _sink = mech
    if m.caps.kprobes:
        pytest.skip("this kernel has kprobes: kernel exec breakpoints are allowed")
    baseline = perf_fds()
    refusals = await m.apply(table(1, watch("vfs_read", Access.EXEC, 1)))
    assert [r.reason for r in refusals] == [KERNEL_EXEC_REFUSED]
    assert perf_fds() == baseline


async def test_thread_methods_belong_to_ptrace(
    mech: tuple[KernelPerfMechanism, RecordingSink],
) -> None:
    m, _sink = mech
    with pytest.raises(FailedPrecondition, match="kernel-only"):
        await m.attach(os.getpid())
    with pytest.raises(FailedPrecondition, match="kernel-only"):
        await m.apply([SlotWrite(pid=1, tid=1, generation=1, pools={POOL: (None,) * 4})])
    with pytest.raises(FailedPrecondition, match="kernel memory is not readable"):
        await m.read_memory(0, KSYMS.resolve("init_stack"), 8)
    info = m.info()
    assert info.name == "perf-kernel"
    assert info.available
    assert any("uevents" in n for n in info.notes)


async def test_a_cpu_coming_online_is_armed_before_it_is_reported_stable(
    mech: tuple[KernelPerfMechanism, RecordingSink],
    cpu1_hotplug: None,
    native_bins: dict[str, str],
    btf: Path,
) -> None:
    m, sink = mech
    set_cpu_online(False)
    async with asyncio.timeout(5):
        assert await m.wait_cpu_stable()
    assert 1 not in m.online_cpus
    assert await m.apply(table(1, watch("__start_BTF"))) == ()
    assert 1 not in m.armed_cpus(POOL, 0)
    set_cpu_online(True)
    async with asyncio.timeout(5):
        assert await m.wait_cpu_stable()
    assert 1 in m.armed_cpus(POOL, 0)
    touch_kernel(native_bins, 1, 5)
    await sink.wait_for(lambda: any(h.cpu == 1 for h in sink.hits), seconds=2.0)


async def test_a_cpu_that_flaps_gets_fresh_events(
    mech: tuple[KernelPerfMechanism, RecordingSink],
    cpu1_hotplug: None,
    native_bins: dict[str, str],
    btf: Path,
) -> None:
    m, sink = mech
    if 1 not in m.online_cpus:
        pytest.skip("CPU 1 is offline")
    assert await m.apply(table(1, watch("__start_BTF"))) == ()
    assert 1 in m.armed_cpus(POOL, 0)
    fds = perf_fds()
    set_cpu_online(False)
    async with asyncio.timeout(5):
        assert await m.wait_cpu_stable()
    assert m.armed_cpus(POOL, 0) == m.online_cpus
    assert 1 not in m.online_cpus
    assert m.open_fds() == 2 * len(m.online_cpus)  # CPU 1's event and ring are closed
    assert perf_fds() < fds
    set_cpu_online(True)
    async with asyncio.timeout(5):
        assert await m.wait_cpu_stable()
    assert 1 in m.armed_cpus(POOL, 0)
    # The events that CPU 1 had before going offline would stay silent; these count.
    touch_kernel(native_bins, 1, 5)
    await sink.wait_for(lambda: sum(h.cpu == 1 for h in sink.hits) >= 40, seconds=2.0)
