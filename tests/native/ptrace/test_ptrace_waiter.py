"""The tracer's wake-ups: a SIGCHLD signalfd and a command eventfd."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator

import pytest

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
