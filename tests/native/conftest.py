"""Native test fixtures: C targets compiled with gcc once per session, native checks."""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from native_support import require_native

C_DIR = Path(__file__).parent / "c"


def native_ptrace_reason() -> str:
    """Why ptrace/perf tests cannot run here, or "" when they can."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"needs Linux x86_64, this is {platform.system()} {platform.machine()}"
    if os.geteuid() != 0:
        return "needs root (ptrace of arbitrary processes, perf breakpoints)"
    if shutil.which("gcc") is None:
        return "needs gcc to build the C targets"
    return ""


@pytest.fixture(scope="session")
def native_bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every tests/native/c/*.c compiled into a temporary directory: name -> path."""
    reason = native_ptrace_reason()
    if reason:
        require_native(reason)
    out = tmp_path_factory.mktemp("native-bin")
    bins: dict[str, str] = {}
    for src in sorted(C_DIR.glob("*.c")):
        exe = out / src.stem
        subprocess.run(
            ["gcc", "-O1", "-g", "-Wall", "-pthread", "-o", str(exe), str(src)],
            check=True,
            capture_output=True,
        )
        bins[src.stem] = str(exe)
    return bins


@pytest.fixture(autouse=True)
def restore_signal_mask() -> Iterator[None]:
    """The ptrace mechanism blocks SIGCHLD in the thread that builds it; undo that after
    each test, or later tests' children (a shell waiting for its jobs) would inherit it."""
    saved = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, saved)
