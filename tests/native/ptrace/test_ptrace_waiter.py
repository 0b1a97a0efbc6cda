"""The tracer's wake-ups: a SIGCHLD signalfd and a command eventfd."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from hwbkptd.arch.ptrace import binding as pt
from hwbkptd.arch.ptrace.waiter import Waiter, block_sigchld, threads_not_blocking_sigchld


@pytest.fixture
def waiter() -> Iterator[Waiter]:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    block_sigchld()
    w = Waiter()
    yield w
    w.close()
    signal.pthread_sigmask(signal.SIG_SETMASK, old)


def test_a_child_exit_wakes_it_with_the_pid(waiter: Waiter) -> None:
    proc = subprocess.Popen(["true"])
    # SIGCHLD is per process: earlier children may have left one pending.
    for _ in range(3):
        hint, woken = waiter.wait()
        if hint == proc.pid:
            break
    assert (hint, woken) == (proc.pid, False)
    proc.wait()


def test_a_timeout_returns_nothing(waiter: Waiter) -> None:
    # Drain what earlier children may have left pending, then nothing comes.
    while waiter.wait(0) != (-1, False):
        pass
    assert waiter.wait(0.01) == (-1, False)


def test_wake_from_another_thread(waiter: Waiter) -> None:
    threading.Timer(0.05, waiter.wake).start()
    for _ in range(3):
        _hint, woken = waiter.wait()
        if woken:
            break
    assert woken


def test_blocked_in_this_thread(waiter: Waiter) -> None:
    assert threading.get_native_id() not in threads_not_blocking_sigchld()
    assert signal.SIGCHLD in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def _wait_for(waiter: Waiter, pid: int) -> tuple[int, bool]:
    """The hint of the SIGCHLD from ``pid`` (earlier children may have left one pending),
    and whether it announced a SIGTRAP ptrace-stop."""
    for _ in range(3):
        hint, _woken = waiter.wait(5)
        if hint == pid:
            break
    return hint, waiter.sigtrap


@pytest.mark.native
def test_it_tells_a_sigtrap_signal_stop_from_other_stops(
    waiter: Waiter, native_bins: dict[str, str]
) -> None:
    # Popen's poll() would take our ptrace-stops for exits: signals and waits go by pid.
    proc = subprocess.Popen(["sleep", "30"])
    pid = proc.pid
    try:
        pt.seize(pid, 0)
        os.kill(pid, signal.SIGTRAP)  # a signal-delivery-stop: CLD_TRAPPED, SIGTRAP
        assert _wait_for(waiter, pid) == (pid, True)
        pt.cont(pid)  # SIGTRAP suppressed
        pt.interrupt(pid)  # PTRACE_EVENT_STOP: CLD_STOPPED
        assert _wait_for(waiter, pid) == (pid, False)
        os.kill(pid, signal.SIGKILL)  # CLD_KILLED
        assert _wait_for(waiter, pid) == (pid, False)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while os.waitpid(pid, pt.WALL)[1] & 0x7F == 0x7F:
            pass  # a stop still unreported: the death follows
        proc.returncode = -signal.SIGKILL


def test_a_spin_catches_what_comes_within_it(waiter: Waiter) -> None:
    while waiter.wait(0) != (-1, False):
        pass
    threading.Timer(0.01, waiter.wake).start()
    start = time.monotonic()
    # The budget (2 s) outlasts the wake-up (10 ms): the spin sees it, nothing blocks.
    assert waiter.wait(0, spin_ns=2_000_000_000) == (-1, True)
    assert time.monotonic() - start < 1.0


def test_a_spin_gives_up_after_its_budget(waiter: Waiter) -> None:
    while waiter.wait(0) != (-1, False):
        pass
    start = time.monotonic()
    assert waiter.wait(0, spin_ns=20_000_000) == (-1, False)
    assert time.monotonic() - start >= 0.020
