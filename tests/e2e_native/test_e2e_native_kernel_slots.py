"""Kernel requests on real slots through the whole stack (issue 4 items 2-4): a real
``hwbkptd --machine native``, a library client over gRPC, real perf events.

The kernel is made to read ``__start_BTF`` (the start of /sys/kernel/btf/vmlinux) on a
chosen CPU by tests/c/perf_kernel_touch.c, so hits show which CPUs are armed.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from native_e2e_support import (
    Daemon,
    Target,
    expect_event,
    hits_of,
    native_daemon,
    native_reason,
    quiet_events,
)
from native_support import need_kernel_addresses, require_native

import hwbkpt

pytestmark = [pytest.mark.native, pytest.mark.e2e]

BTF = Path("/sys/kernel/btf/vmlinux")
CPU1_ONLINE = Path("/sys/devices/system/cpu/cpu1/online")
SYMBOL = "__start_BTF"


@pytest.fixture(scope="module")
def tools(bins: dict[str, str]) -> dict[str, str]:
    """The test C programs, where the kernel has BTF for perf_kernel_touch to read."""
    if not BTF.exists():
        require_native("/sys/kernel/btf/vmlinux is missing (CONFIG_DEBUG_INFO_BTF)")
    return bins


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, bins: dict[str, str]) -> Iterator[Daemon]:
    assert not native_reason()
    need_kernel_addresses()
    d = native_daemon(tmp_path_factory.mktemp("hwbkptd-kslots"), "perf")
    yield d
    assert d.stop() == 0, d.log()


@pytest.fixture
def cpu1() -> Iterator[None]:
    """CPU 1 may be taken offline; it is online again afterwards, whatever happens."""
    if not CPU1_ONLINE.exists():
        require_native("CPU 1 cannot be taken offline here (no cpu1/online)")
    try:
        yield
    finally:
        CPU1_ONLINE.write_text("1")


def touch(tools: dict[str, str], cpu: int, count: int = 5) -> None:
    subprocess.run(
        [tools["perf_kernel_touch"], str(cpu), str(count), str(BTF)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def hit_cpus(session: hwbkpt.Session, bp: int, tools: dict[str, str], cpus: set[int]) -> set[int]:
    """Touch from each CPU until every one of ``cpus`` reported a hit (or 5 s passed)."""
    seen: set[int] = set()
    deadline = time.monotonic() + 5
    while not cpus <= seen and time.monotonic() < deadline:
        for cpu in sorted(cpus - seen):
            touch(tools, cpu)
        seen |= {h.cpu for h in hits_of(quiet_events(session, 0.2), bp)}
    return seen


def test_traced_threads_keep_a_kernel_request_pending_until_they_let_go(
    daemon: Daemon, bins: dict[str, str], tools: dict[str, str]
) -> None:
    target = Target([bins["vars"]])
    assert target.readline() == "ready"
    try:
        with daemon.client() as client:
            tracer = client.open_session("tracer")
            kernel = client.open_session("kernel")
            held = [
                tracer.watch(target.address + 8 * i, pid=target.pid, priority="high")
                for i in range(4)
            ]
            assert all(b.state is hwbkpt.BreakpointState.INSTALLED for b in held)
            bp = kernel.watch(SYMBOL, kernel=True, access="rw")
            # All or nothing: a thread using all four slots leaves none for every CPU.
            assert bp.state is hwbkpt.BreakpointState.PENDING
            assert bp.pending_reason is hwbkpt.PendingReason.PRIORITY
            touch(tools, 0)
            assert hits_of(quiet_events(kernel, 0.3), bp.id) == []
            tracer.remove(held[0].id)
            expect_event(kernel, "restored", where=lambda e: e.breakpoint_id == bp.id)
            assert hit_cpus(kernel, bp.id, tools, {0, 1}) >= {0, 1}
            # The thread keeps its three watches beside it.
            target.write(1, 9)
            assert expect_event(tracer, "hit").payload.value_int == 9  # type: ignore[union-attr]
    finally:
        target.kill()


def test_a_cpu_that_comes_back_is_armed_with_installed_kernel_requests(
    daemon: Daemon, tools: dict[str, str], cpu1: None
) -> None:
    CPU1_ONLINE.write_text("0")
    with daemon.client() as client, client.open_session("hotplug") as s:
        bp = s.watch(SYMBOL, kernel=True, access="rw")
        assert bp.state is hwbkpt.BreakpointState.INSTALLED
        assert hit_cpus(s, bp.id, tools, {0}) == {0}
        CPU1_ONLINE.write_text("1")
        assert 1 in hit_cpus(s, bp.id, tools, {1})


def test_slots_held_outside_leave_the_request_pending_external_until_freed(
    daemon: Daemon, tools: dict[str, str]
) -> None:
    hog = subprocess.Popen(
        [tools["perf_slot_hog"], "cpu"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert hog.stdout is not None
        ready = hog.stdout.readline()
        assert ready.startswith("ready"), hog.stderr.read() if hog.stderr else ready
        with daemon.client() as client, client.open_session("outside") as s:
            bp = s.watch(SYMBOL, kernel=True, access="rw")
            assert bp.state is hwbkpt.BreakpointState.PENDING
            assert bp.pending_reason is hwbkpt.PendingReason.EXTERNAL
            assert hog.stdin is not None
            hog.stdin.close()  # the helper exits and frees its slots
            assert hog.wait(10) == 0
            expect_event(s, "restored", 10, where=lambda e: e.breakpoint_id == bp.id)
            assert hit_cpus(s, bp.id, tools, {0, 1}) >= {0, 1}
    finally:
        if hog.poll() is None:
            hog.kill()
            hog.wait(10)
