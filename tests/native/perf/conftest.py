"""Fixtures for the perf helper's native tests: root, real perf events, C helpers, CPU hotplug."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from native_support import require_native
from perf_support import BTF, C_DIR, CPU1_ONLINE, need_kernel_perf, set_cpu_online


@pytest.fixture
def kernel_perf() -> None:
    """Kernel perf breakpoints work here and a slot is free on every CPU."""
    need_kernel_perf()


@pytest.fixture
def kernel_root() -> None:
    """Root with CPU-wide perf allowed (for what needs no slot: symbols, uevents)."""
    need_kernel_perf(free_slot=False, kernel_addresses=False)


@pytest.fixture(scope="session")
def c_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """perf_slot_hog and perf_kernel_touch, compiled for this run."""
    if shutil.which("gcc") is None:
        require_native("gcc is not installed")
    out = tmp_path_factory.mktemp("perf-c")
    built: dict[str, Path] = {}
    for name in ("perf_slot_hog", "perf_kernel_touch"):
        exe = out / name
        subprocess.run(
            ["gcc", "-O2", "-Wall", "-Werror", "-o", str(exe), str(C_DIR / f"{name}.c")],
            check=True,
        )
        built[name] = exe
    return built


@pytest.fixture
def btf() -> Path:
    """The kernel's BTF blob: reading it makes the kernel read ``__start_BTF``."""
    if not BTF.exists():
        require_native("/sys/kernel/btf/vmlinux is missing (CONFIG_DEBUG_INFO_BTF)")
    return BTF


@pytest.fixture
def cpu1_hotplug() -> Iterator[None]:
    """CPU 1 may be taken offline by the test; it is back online afterwards, whatever happens."""
    need_kernel_perf(free_slot=False, kernel_addresses=False)
    if not CPU1_ONLINE.exists() or not os.access(CPU1_ONLINE, os.W_OK):
        require_native("CPU 1 cannot be taken offline here (no writable cpu1/online)")
    try:
        yield
    finally:
        set_cpu_online(True)
