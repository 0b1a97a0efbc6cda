"""Fixtures for the perf helper's native tests: root, real perf events, CPU hotplug."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from native_support import require_native
from perf_support import BTF, CPU1_ONLINE, need_kernel_perf, set_cpu_online

from hwbkptd.daemon.main import tune_gc


@pytest.fixture(autouse=True)
def broker_gc() -> Iterator[None]:
    """The mechanisms here run in the test process, as they run in ``hwbkptd``: under its
    collector policy (``tune_gc``: what exists before is frozen out of the collector's
    walks). Without it, a full collection of pytest's own heap, late in ``make test``,
    stopped the event loop for up to 230 ms (measured with gc.callbacks), long enough for
    a 30,000-write burst to overflow a perf ring no broker would have let fill."""
    threshold = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.fixture
def kernel_perf() -> None:
    """Kernel perf breakpoints work here and a slot is free on every CPU."""
    need_kernel_perf()


@pytest.fixture
def kernel_root() -> None:
    """Root with CPU-wide perf allowed (for what needs no slot: symbols, uevents)."""
    need_kernel_perf(free_slot=False, kernel_addresses=False)


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
