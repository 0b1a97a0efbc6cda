"""Native test fixtures: the test C programs (tests/c), native checks."""

from __future__ import annotations

import os
import platform
import signal
from collections.abc import Iterator

import pytest
from native_support import require_native


def native_ptrace_reason() -> str:
    """Why ptrace/perf tests cannot run here, or "" when they can."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"needs Linux x86_64, this is {platform.system()} {platform.machine()}"
    if os.geteuid() != 0:
        return "needs root (ptrace of arbitrary processes, perf breakpoints)"
    return ""


@pytest.fixture(scope="session")
def native_bins(c_bins: dict[str, str]) -> dict[str, str]:
    """The test C programs (tests/c), where ptrace and perf tests can run them."""
    reason = native_ptrace_reason()
    if reason:
        require_native(reason)
    return c_bins


@pytest.fixture(autouse=True)
def restore_signal_mask() -> Iterator[None]:
    """The ptrace mechanism blocks SIGCHLD in the thread that builds it; undo that after
    each test, or later tests' children (a shell waiting for its jobs) would inherit it."""
    saved = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, saved)
