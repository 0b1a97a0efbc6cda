"""PtraceMechanism against real C targets, with a fake sink in place of the broker."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator

import pytest
from c_programs import nm_address
from ptrace_support import (
    FakeSink,
    Target,
    entry,
    proc_state,
    table,
    tracer_pid,
    unblocked,
    until,
)

from hwbkptd.arch.ptrace import PtraceMechanism, ptrace_available
from hwbkptd.arch.ptrace.pacing import BATCH_WINDOW
from hwbkptd.core.errors import FailedPrecondition, InvalidArgument, NotFound
from hwbkptd.core.mechanism import HitReport
from hwbkptd.core.model import Access

pytestmark = pytest.mark.native


@pytest.fixture(params=["perf", "debugreg"])
async def rig(
    request: pytest.FixtureRequest, native_bins: dict[str, str]
) -> AsyncIterator[tuple[PtraceMechanism, FakeSink]]:
    mech = PtraceMechanism(request.param)
    assert mech.info().available, mech.info().reason
    sink = FakeSink()
    sink.mech = mech
    mech.start(sink)
    yield mech, sink
    await mech.close()


@pytest.fixture
async def perf_rig(native_bins: dict[str, str]) -> AsyncIterator[tuple[PtraceMechanism, FakeSink]]:
    mech = PtraceMechanism("perf")
    sink = FakeSink()
    sink.mech = mech
    mech.start(sink)
    yield mech, sink
    await mech.close()


def le(value: int) -> bytes:
    return value.to_bytes(8, "little")


async def test_every_write_is_a_hit_with_its_value(
    rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, sink = rig
    n = 10_000
    target = Target([native_bins["writer"], str(n)])
    try:
        tids = await mech.attach(target.pid)
        assert list(tids) == [target.pid]
        assert sink.started == [(target.pid, target.pid)]
        refusals = await mech.apply([table(target.pid, target.pid, 7, entry(target.address))])
        assert refusals == []
        target.go()
        await until(lambda: sink.process_exits != [], 120, "the target's exit")
        rc, out = target.finish()
    finally:
        target.kill()
    assert (rc, out.strip()) == (0, f"done {n}")
    assert len(sink.hits) == n
    assert [h.values for h in sink.hits] == [(le(i),) for i in range(1, n + 1)]
    first = sink.hits[0]
    assert (first.pid, first.tid, first.pool, first.index, first.generation) == (
        target.pid,
        target.pid,
        "dr",
        0,
        7,
    )
    assert first.address == target.address
    assert first.access is Access.WRITE
    assert first.ip > 0
    assert not first.halted
    # Batched: far fewer sink calls than hits.
    assert sink.batches < n
    assert sink.thread_exits == [(target.pid, target.pid, 0)]
    assert sink.process_exits == [(target.pid, 0)]


async def test_new_threads_are_armed_before_they_run(
    rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, sink = rig
    n = 200
    target = Target([native_bins["threads"], str(n)])
    try:
        await mech.attach(target.pid)
        watch = entry(target.address)
        sink.auto = lambda pid, tid: table(pid, tid, 1, watch)
        await mech.apply([table(target.pid, target.pid, 1, watch)])
        target.go()
        await until(lambda: sink.process_exits != [], 60, "the target's exit")
        rc, out = target.finish()
    finally:
        target.kill()
    assert (rc, out.strip()) == (0, f"done {n}")
    assert sink.refusals == []
    tids = {h.tid for h in sink.hits}
    assert len(sink.hits) == n
    assert len(tids) == n
    assert target.pid not in tids
    # Other threads run on while one is stopped, so a value may already be a later write's.
    assert all(1 <= int.from_bytes(h.values[0], "little") <= n for h in sink.hits)
    started = {tid for pid, tid in sink.started if tid != target.pid}
    assert started == tids
    exited = {tid for pid, tid, code in sink.thread_exits if code == 0}
    assert exited == tids | {target.pid}
    assert sink.process_exits == [(target.pid, 0)]


async def test_busy_threads_among_idle_ones_lose_no_hit(
    rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    # More threads than the tracer sweeps at once: the writers' stops often share one
    # SIGCHLD, and the others are collected by the deferred sweep (tracer.py).
    mech, sink = rig
    n, writers, idle = 2000, 3, 8
    target = Target([native_bins["busy"], str(writers), str(idle), str(n)])
    try:
        tids = await mech.attach(target.pid)
        assert len(tids) == 1 + writers + idle
        watches = [entry(target.address + 8 * i) for i in range(writers)]
        assert await mech.apply([table(target.pid, tid, 1, *watches) for tid in tids]) == []
        target.go()
        await until(lambda: sink.process_exits != [], 120, "the target's exit")
        rc, out = target.finish()
    finally:
        target.kill()
    assert (rc, out.strip()) == (0, f"done {n}")
    by_slot: dict[int, list[HitReport]] = {}
    for hit in sink.hits:
        by_slot.setdefault(hit.index, []).append(hit)
    assert sorted(by_slot) == list(range(writers))
    for hits in by_slot.values():
        # Each variable has one writer, stopped at each of its writes: every value, in order.
        assert [h.values for h in hits] == [(le(k),) for k in range(1, n + 1)]
        assert len({h.tid for h in hits}) == 1
    assert len({hits[0].tid for hits in by_slot.values()}) == writers


async def _arm(target: Target, mech: PtraceMechanism | None) -> None:
    """Attach and watch the target's variable (untraced with no mechanism)."""
    if mech is not None:
        await mech.attach(target.pid)
        await mech.apply([table(target.pid, target.pid, 1, entry(target.address))])


async def _run_signals(binary: str, mech: PtraceMechanism | None) -> tuple[int, str]:
    target = Target([binary])
    try:
        await _arm(target, mech)
        target.go()
        await until(lambda: proc_state(target.pid) in "Tt", 10, "the SIGSTOP")
        await asyncio.sleep(0.2)
        assert proc_state(target.pid) in "Tt", "job control stop did not hold"
        os.kill(target.pid, signal.SIGCONT)
        return target.finish()
    finally:
        target.kill()


async def test_signals_behave_as_untraced(
    rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, sink = rig
    untraced = await _run_signals(native_bins["signals"], None)
    assert untraced == (7, "usr1\nstopping\ncont\ntrap\nend\n")
    traced = await _run_signals(native_bins["signals"], mech)
    assert traced == untraced
    await until(lambda: sink.process_exits != [], 10)
    assert [h.values for h in sink.hits] == [(le(i),) for i in (1, 2, 3, 4)]
    assert sink.process_exits[0][1] == 7


async def _run_debug_traps(binary: str, mech: PtraceMechanism | None) -> tuple[int, str]:
    target = Target([binary])
    try:
        await _arm(target, mech)
        target.go()
        return target.finish()
    finally:
        target.kill()


async def test_a_debug_trap_without_cause_is_swallowed_an_icebp_delivered(
    rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    """A SIGTRAP with si_code TRAP_BRKPT not after an icebp is what the kernel sends for a
    #DB whose DR6 was lost (seen on this VM: it killed the target); traced, the target
    does not get it. A real icebp's is the program's own and still reaches it."""
    mech, sink = rig
    untraced = await _run_debug_traps(native_bins["debug_traps"], None)
    assert untraced == (0, "trap 1\nsent\ntrap 1\nend\n")
    traced = await _run_debug_traps(native_bins["debug_traps"], mech)
    assert traced == (0, "sent\ntrap 1\nend\n")
    await until(lambda: sink.process_exits != [], 10)
    assert [h.values for h in sink.hits] == [(le(i),) for i in (1, 2, 3)]


async def test_exec_breakpoint_hits_once_per_call(
    rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, sink = rig
    n = 1000
    target = Target([native_bins["calls"], str(n)])
    try:
        await mech.attach(target.pid)
        await mech.apply([table(target.pid, target.pid, 3, entry(target.address, 1, Access.EXEC))])
        target.go()
        await until(lambda: sink.process_exits != [], 60, "the target's exit")
        rc, out = target.finish()
    finally:
        target.kill()
    assert (rc, out.strip()) == (0, f"done {n}")
    assert len(sink.hits) == n
    assert all(h.ip == target.address == h.address for h in sink.hits)
    assert all(h.access is Access.EXEC and h.values == () for h in sink.hits)


async def test_halt_keeps_the_thread_until_resume(
    rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, sink = rig
    target = Target([native_bins["writer"], "3"])
    try:
        await mech.attach(target.pid)
        await mech.apply([table(target.pid, target.pid, 1, entry(target.address, halt=True))])
        target.go()
        for i in (1, 2, 3):
            await until(lambda i=i: len(sink.hits) == i, 10, f"hit {i}")  # type: ignore[misc]
            await asyncio.sleep(0.05)
            assert len(sink.hits) == i
            assert sink.hits[-1].halted
            assert proc_state(target.pid) == "t"
            await mech.resume(target.pid)
        rc, out = target.finish()
    finally:
        target.kill()
    assert (rc, out.strip()) == (0, "done 3")
    with pytest.raises(NotFound):
        await mech.resume(target.pid)


async def test_detach_leaves_no_armed_slot(
    rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, sink = rig
    target = Target([native_bins["writer"], "400", "2000", "4"])
    four = [entry(target.address + 8 * i) for i in range(4)]
    try:
        await mech.attach(target.pid)
        assert await mech.apply([table(target.pid, target.pid, 1, *four)]) == []
        target.go()
        await until(lambda: len(sink.hits) >= 8, 10, "hits before detach")
        await mech.detach(target.pid)
        seen = len(sink.hits)
        await asyncio.sleep(0.1)
        assert len(sink.hits) == seen
        assert proc_state(target.pid) in "RSD"
        await mech.close()  # one instance per process: they share SIGCHLD
        # A fresh instance (same arming) places four slots on the same thread at once.
        fresh = PtraceMechanism(mech.arming)
        sink2 = FakeSink()
        sink2.mech = fresh
        fresh.start(sink2)
        try:
            await fresh.attach(target.pid)
            assert await fresh.apply([table(target.pid, target.pid, 1, *four)]) == []
            await until(lambda: len(sink2.hits) >= 8, 10, "hits on the fresh instance")
            assert {h.index for h in sink2.hits} == {0, 1, 2, 3}
        finally:
            await fresh.close()
        rc, out = target.finish()
    finally:
        target.kill()
    assert (rc, out.strip()) == (0, "done 400")
    assert sink.process_exits == []


async def test_one_running_instance_per_process(
    perf_rig: tuple[PtraceMechanism, FakeSink],
) -> None:
    other = PtraceMechanism("perf")
    with pytest.raises(FailedPrecondition):
        other.start(FakeSink())


async def test_a_hit_at_a_low_rate_is_delivered_at_once(
    perf_rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    # About 1,000 hits/s: hits do not wait for a batch window (the loop's wake-up takes
    # tens of microseconds; waiting for a window would take up to a millisecond).
    mech, sink = perf_rig
    n = 40
    target = Target([native_bins["writer"], str(n), "1000"])
    try:
        await mech.attach(target.pid)
        await mech.apply([table(target.pid, target.pid, 1, entry(target.address))])
        seen: list[float] = []
        sink.on_hits = lambda hits: seen.extend(  # type: ignore[method-assign]
            time.time_ns() - h.time_ns for h in hits
        )
        target.go()
        await until(lambda: len(seen) == n, 30, "the hits")
        target.finish()
    finally:
        target.kill()
    delays = sorted(seen)
    assert delays[n // 2] < BATCH_WINDOW * 1e9, delays


async def test_forked_children_are_not_followed_and_survive(
    rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, sink = rig
    target = Target([native_bins["forker"]])
    try:
        await mech.attach(target.pid)
        await mech.apply([table(target.pid, target.pid, 1, entry(target.address))])
        target.go()
        await until(lambda: sink.process_exits != [], 10, "the target's exit")
        rc, out = target.finish()
    finally:
        target.kill()
    assert (rc, out.strip()) == (0, "child 0")
    assert [h.values for h in sink.hits] == [(le(1),)]
    assert {pid for pid, _ in sink.started} == {target.pid}


async def test_launch_holds_until_release(
    perf_rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, sink = perf_rig
    writer = native_bins["writer"]
    watched = nm_address(writer, "watched")
    sink.auto = lambda pid, tid: table(pid, tid, 1, entry(watched))
    pid = await mech.launch([writer, "50", "0", "1", "nowait"], dict(os.environ), "/")
    assert sink.started == [(pid, pid)]
    await until(lambda: sink.tasks != [] and all(t.done() for t in sink.tasks), 5)
    await asyncio.sleep(0.2)
    assert sink.hits == []
    assert proc_state(pid) == "t"
    await mech.release(pid)
    await until(lambda: sink.process_exits != [], 10, "the launched program's exit")
    assert len(sink.hits) == 50
    assert sink.process_exits == [(pid, 0)]
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 (WNOHANG: never blocks); reaped already


async def test_item5_kill_launched_ends_a_held_launch_and_reaps_it(
    perf_rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, sink = perf_rig
    argv = [native_bins["writer"], "1", "0", "1", "nowait"]
    pid = await mech.launch(argv, dict(os.environ), "/")
    await mech.kill_launched(pid)
    assert sink.process_exits == [(pid, -signal.SIGKILL)]
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 (WNOHANG: never blocks); reaped already
    ran = await mech.launch(["sleep", "60"], dict(os.environ), "/")
    await mech.release(ran)
    try:
        with pytest.raises(FailedPrecondition, match="released"):
            await mech.kill_launched(ran)
    finally:
        os.kill(ran, signal.SIGKILL)
    await until(lambda: (ran, -signal.SIGKILL) in sink.process_exits, 10, "its end")


async def test_exec_is_reported(
    perf_rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, sink = perf_rig
    pid = await mech.launch(["sh", "-c", "exec true"], dict(os.environ), "/")
    await mech.release(pid)
    await until(lambda: sink.process_exits != [], 10)
    assert sink.execs == [pid]
    assert sink.process_exits == [(pid, 0)]


async def test_launch_refusals(perf_rig: tuple[PtraceMechanism, FakeSink]) -> None:
    mech, _ = perf_rig
    with pytest.raises(NotFound) as err:
        await mech.launch(["no-such-program-hwbkpt"], dict(os.environ), "/")
    assert err.value.field == "argv"
    with pytest.raises(NotFound):
        await mech.launch(["true"], dict(os.environ), "/no/such/dir")
    with pytest.raises(InvalidArgument):
        await mech.launch([], {}, "/")


async def test_attach_refusals(
    perf_rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, _ = perf_rig
    with pytest.raises(NotFound) as err:
        await mech.attach(2**22 + 12345)
    assert err.value.field == "pid"
    with pytest.raises(InvalidArgument):
        await mech.attach(0)
    with pytest.raises(FailedPrecondition):
        await mech.attach(os.getpid())


async def test_process_under_gdb_is_refused_naming_gdb(
    perf_rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, _ = perf_rig
    if shutil.which("gdb") is None:
        pytest.skip("gdb is not installed")
    target = Target([native_bins["writer"], "1"])
    gdb = await asyncio.create_subprocess_exec(
        *unblocked(
            native_bins,
            ["gdb", "-nx", "-q", "-p", str(target.pid), "-batch", "-ex", "shell sleep 10"],
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await until(lambda: tracer_pid(target.pid) != 0, 20, "gdb to attach")
        with pytest.raises(FailedPrecondition) as err:
            await mech.attach(target.pid)
        assert f"pid {gdb.pid} (gdb)" in err.value.message
        assert "--nonstop" in err.value.message
    finally:
        gdb.kill()
        await gdb.wait()
        target.kill()


async def test_idle_broker_uses_no_cpu(
    perf_rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, sink = perf_rig
    target = Target([native_bins["writer"], "1"])  # waits on stdin: idle
    try:
        await mech.attach(target.pid)
        await mech.apply([table(target.pid, target.pid, 1, entry(target.address))])
        before = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.sleep(2.0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        assert used < 0.020, f"idle broker used {used * 1000:.1f} ms of CPU in 2 s"
        # ...and still answers promptly when the target moves.
        target.go()
        start = time.monotonic()
        await until(lambda: len(sink.hits) >= 1, 5)
        assert time.monotonic() - start < 1.0
    finally:
        target.kill()


async def test_asyncio_subprocess_still_works(
    perf_rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, _ = perf_rig
    target = Target([native_bins["writer"], "1"])
    try:
        await mech.attach(target.pid)
        proc = await asyncio.create_subprocess_exec(
            "/bin/echo", "hello", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
        assert (out, proc.returncode) == (b"hello\n", 0)
    finally:
        target.kill()


async def test_kernel_context_writes_are_refused(
    perf_rig: tuple[PtraceMechanism, FakeSink],
) -> None:
    mech, _ = perf_rig
    refusals = await mech.apply([table(0, 0, 1, entry(0xFFFF_FFFF_8100_0000))])
    assert [(r.tid, r.index) for r in refusals] == [(0, 0)]


async def test_read_memory(
    perf_rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, _ = perf_rig
    target = Target([native_bins["writer"], "1"])
    try:
        assert await mech.read_memory(target.pid, target.address, 8) == bytes(8)
        with pytest.raises(InvalidArgument):
            await mech.read_memory(target.pid, 8, 8)
    finally:
        target.kill()
    with pytest.raises(NotFound):
        await mech.read_memory(2**22 + 12345, 0x1000, 8)


def test_available_without_building_one(native_bins: dict[str, str]) -> None:
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    assert ptrace_available() == (True, "")
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == mask


def test_info_names_the_arming(native_bins: dict[str, str]) -> None:
    perf = PtraceMechanism("perf").info()
    assert (perf.name, perf.available, perf.arming) == ("ptrace", True, "perf")
    assert PtraceMechanism("auto").info().arming == "perf"
    debugreg = PtraceMechanism("debugreg").info()
    assert debugreg.arming == "debugreg"
    assert any("dies of SIGTRAP" in note for note in debugreg.notes)
    with pytest.raises(InvalidArgument):
        PtraceMechanism("nope")


async def test_follow_fork_arms_the_child_before_it_runs(
    perf_rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, sink = perf_rig
    target = Target([native_bins["forker"]])
    try:
        await mech.attach(target.pid, follow_fork=True)
        watch = entry(target.address)  # fork keeps the address space layout
        sink.auto = lambda pid, tid: table(pid, tid, 1, watch)
        await mech.apply([table(target.pid, target.pid, 1, watch)])
        target.go()
        await until(lambda: len(sink.process_exits) == 2, 10, "both exits")
        rc, out = target.finish()
    finally:
        target.kill()
    assert (rc, out.strip()) == (0, "child 0")
    child = next(pid for pid, _ in sink.started if pid != target.pid)
    assert sink.started == [(target.pid, target.pid), (child, child)]
    assert sorted((h.pid, h.values) for h in sink.hits) == sorted(
        [(child, (le(42),)), (target.pid, (le(1),))]
    )
    assert sorted(sink.process_exits) == sorted([(child, 0), (target.pid, 0)])


async def test_attach_while_threads_are_being_created(
    perf_rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, sink = perf_rig
    n = 200
    target = Target([native_bins["threads"], str(n)])
    try:
        watch = entry(target.address)
        sink.auto = lambda pid, tid: table(pid, tid, 1, watch)
        target.go()
        tids = await mech.attach(target.pid)
        await mech.apply([table(target.pid, tid, 1, watch) for tid in tids])
        await until(lambda: sink.process_exits != [], 20, "the target's exit")
        rc, out = target.finish()
    finally:
        target.kill()
    assert (rc, out.strip()) == (0, f"done {n}")
    started = [tid for _, tid in sink.started]
    assert len(started) == len(set(started))
    assert {h.tid for h in sink.hits} <= set(started)
    assert sink.process_exits == [(target.pid, 0)]


async def _two_slot_hits(arming: str, writer: str, n: int) -> tuple[list[HitReport], int]:
    mech = PtraceMechanism(arming)
    sink = FakeSink()
    sink.mech = mech
    mech.start(sink)
    target = Target([writer, str(n), "0", "2"])
    try:
        await mech.attach(target.pid)
        a, b = entry(target.address), entry(target.address + 8)
        assert await mech.apply([table(target.pid, target.pid, 1, a, b)]) == []
        target.go()
        await until(lambda: sink.process_exits != [], 60, "the target's exit")
        target.finish()
    finally:
        target.kill()
        await mech.close()
    return sink.hits, target.address


async def test_two_slots_each_hit_names_its_slot_and_instruction(
    native_bins: dict[str, str],
) -> None:
    """Attribution and the instruction pointer: debugreg reads DR6 (never cleared: the
    kernel rewrites it at every trap) and takes the ip from si_addr; perf reads the ip
    with PEEKUSER. Both must name the same slot and the same instruction for each write
    (a slot whose DR6 bit stayed set would be reported again at the other's traps)."""
    n = 500
    offsets = {}
    for arming in ("perf", "debugreg"):
        hits, address = await _two_slot_hits(arming, native_bins["writer"], n)
        assert [h.index for h in hits] == [0, 1] * n, arming
        assert [h.values for h in hits] == [(le(i),) for i in range(1, n + 1) for _ in (0, 1)]
        assert [h.address for h in hits] == [address, address + 8] * n
        by_slot = {i: {h.ip for h in hits if h.index == i} for i in (0, 1)}
        # One store instruction in the writer's loop writes both variables.
        assert all(len(v) == 1 for v in by_slot.values()), (arming, by_slot)
        # Relative to the variable, so the runs compare wherever the program is loaded.
        offsets[arming] = {i: next(iter(v)) - address for i, v in by_slot.items()}
    assert offsets["perf"] == offsets["debugreg"]


async def test_a_trap_loop_spins_and_rare_traps_do_not(
    rig: tuple[PtraceMechanism, FakeSink], native_bins: dict[str, str]
) -> None:
    mech, sink = rig
    # 100 writes a millisecond apart: no spin per trap (one after the stop that arms
    # debug registers may be: it came right after PTRACE_INTERRUPT). Then 3,000 writes
    # back to back: most waits spin, unless the tracer runs in real time (never spins).
    loop_fewest, loop_most = (0, 0) if mech.realtime else (300, 3000)
    for argv, fewest, most in (
        ([native_bins["writer"], "100", "1000"], 0, 3),
        ([native_bins["writer"], "3000"], loop_fewest, loop_most),
    ):
        sink.process_exits.clear()
        before = mech.spins
        target = Target(argv)
        try:
            await mech.attach(target.pid)
            await mech.apply([table(target.pid, target.pid, 1, entry(target.address))])
            target.go()
            await until(lambda: sink.process_exits != [], 60, "the target's exit")
            target.finish()
        finally:
            target.kill()
        assert fewest <= mech.spins - before <= most, argv
