"""Helpers for the perf helper's native tests (fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import errno
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from native_support import machine_refuses, require_native

from hwbkptd.arch.linux.perf_event import HW_BREAKPOINT_RW, breakpoint_attr, perf_event_open
from hwbkptd.arch.perf.caps import detect_caps
from hwbkptd.arch.perf.cpus import read_online
from hwbkptd.arch.perf.kallsyms import Kallsyms
from hwbkptd.core.mechanism import HitReport, Refusal

__all__ = [
    "BTF",
    "CPU1_ONLINE",
    "RecordingSink",
    "need_kernel_perf",
    "perf_fds",
    "set_cpu_online",
    "start_hog",
    "stop_hog",
    "touch_kernel",
]

BTF = Path("/sys/kernel/btf/vmlinux")
CPU1_ONLINE = Path("/sys/devices/system/cpu/cpu1/online")


def need_kernel_perf(*, free_slot: bool = True, kernel_addresses: bool = True) -> None:
    """Root, x86_64, CPU-wide perf breakpoints; the kernel accepting kernel addresses
    (``kernel_addresses``); and (``free_slot``) room for one on every CPU."""
    if platform.machine() != "x86_64":
        require_native(f"the perf helper is built for x86_64, not {platform.machine()}")
    if os.geteuid() != 0:
        require_native("kernel perf breakpoints need root (CAP_PERFMON)")
    caps = detect_caps()
    if not caps.cpu_wide_allowed:
        require_native(f"CPU-wide perf breakpoints unavailable: {caps.cpu_wide_reason}")
    if kernel_addresses and caps.kernel_addresses_refused:
        machine_refuses(caps.kernel_addresses_refused)
    busy = slots_held_elsewhere() if free_slot else ""
    if busy:
        # Not a skip reason one can fix in the code under test: say who, and stop.
        require_native(f"every debug register is taken outside this test: {busy}")


def slots_held_elsewhere() -> str:
    """ "" when a kernel watch fits on every CPU now, else the processes holding perf events."""
    address = Kallsyms.load().resolve("init_stack")
    attr = breakpoint_attr(address, 8, HW_BREAKPOINT_RW, exclude_user=True, disabled=True)
    for cpu in sorted(read_online()):
        try:
            os.close(perf_event_open(attr, -1, cpu))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            return f"CPU {cpu} has no free slot; perf events held by {_perf_holders()}"
    return ""


def _perf_holders() -> str:
    holders: list[str] = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            n = sum(
                1 for fd in fds if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[perf_event]"
            )
            if n and int(pid) != os.getpid():
                with open(f"/proc/{pid}/comm") as comm:
                    holders.append(f"{pid} ({comm.read().strip()}, {n})")
        except OSError:
            continue
    return ", ".join(holders) or "no process with perf events (ptrace debug registers?)"


def touch_kernel(programs: dict[str, str], cpu: int, count: int) -> None:
    """Make the kernel read ``__start_BTF`` from ``cpu``, ``count`` times (8 traps each)."""
    subprocess.run(
        [programs["perf_kernel_touch"], str(cpu), str(count), str(BTF)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def start_hog(programs: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    """perf_slot_hog holding its slots; close its stdin (``stop_hog``) to release them."""
    hog = await asyncio.create_subprocess_exec(
        programs["perf_slot_hog"],
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert hog.stdout is not None
    assert hog.stderr is not None
    line = (await hog.stdout.readline()).decode()
    if not line.startswith("ready"):
        why = (await hog.stderr.read()).decode().strip()
        await hog.wait()
        raise AssertionError(f"perf_slot_hog {' '.join(args)} could not take the slots: {why}")
    return hog


async def stop_hog(hog: asyncio.subprocess.Process) -> None:
    assert hog.stdin is not None
    hog.stdin.close()
    async with asyncio.timeout(10):
        await hog.wait()


def perf_fds() -> int:
    """perf event descriptors this process holds."""
    n = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[perf_event]":
                n += 1
        except FileNotFoundError:  # the listing's own descriptor
            continue
    return n


def set_cpu_online(online: bool, path: Path = CPU1_ONLINE) -> None:
    path.write_text("1" if online else "0")


class RecordingSink:
    """A MechanismSink that keeps everything and lets a test await a condition."""

    def __init__(self) -> None:
        self.hits: list[HitReport] = []
        self.batches = 0
        self.lost = 0
        self.refusals: list[Refusal] = []
        self._changed = asyncio.Event()

    def on_hits(self, hits: Sequence[HitReport]) -> None:
        self.hits.extend(hits)
        self.batches += 1
        self._changed.set()

    def on_hits_lost(self, tid: int, count: int) -> None:
        assert tid == 0
        self.lost += count
        self._changed.set()

    def on_thread_started(self, pid: int, tid: int) -> None:
        raise AssertionError("kernel scope starts no threads")

    def on_thread_exited(self, pid: int, tid: int, exit_code: int) -> None:
        raise AssertionError("kernel scope has no threads")

    def on_process_exited(self, pid: int, exit_code: int) -> None:
        raise AssertionError("kernel scope has no processes")

    def on_process_exec(self, pid: int) -> None:
        raise AssertionError("kernel scope has no processes")

    def on_refusals(self, refusals: Sequence[Refusal]) -> None:
        self.refusals.extend(refusals)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 5.0) -> None:
        async with asyncio.timeout(seconds):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()
