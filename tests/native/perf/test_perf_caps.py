"""Detected capabilities agree with what the kernel actually does."""

from __future__ import annotations

import errno
import os

import pytest

from hwbkptd.arch.linux.perf_event import (
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_X,
    breakpoint_attr,
    perf_event_open,
)
from hwbkptd.arch.perf.caps import detect_caps
from hwbkptd.arch.perf.kallsyms import Kallsyms

pytestmark = [pytest.mark.native, pytest.mark.usefixtures("kernel_root")]


def _try_open(address: int, length: int, bp_type: int) -> int:
    """0 when the kernel accepts a (disabled, never firing) CPU-wide kernel event, else errno."""
    attr = breakpoint_attr(address, length, bp_type, exclude_user=True, disabled=True)
    try:
        fd = perf_event_open(attr, -1, 0)
    except OSError as exc:
        return exc.errno or -1
    os.close(fd)
    return 0


def test_kernel_data_breakpoints_open_exactly_when_detected_allowed() -> None:
    caps = detect_caps()
    assert caps.breakpoint_pmu
    address = Kallsyms.load().resolve("init_stack")
    result = _try_open(address, 8, HW_BREAKPOINT_RW)
    if caps.kernel_allowed:
        assert result in (0, errno.ENOSPC)
    else:
        assert result in (errno.EPERM, errno.EACCES)
        assert "refuses breakpoints on kernel addresses" in caps.kernel_reason


@pytest.mark.usefixtures("kernel_perf")
def test_kernel_data_breakpoints_open_when_detected_allowed() -> None:
    caps = detect_caps()
    assert caps.kernel_allowed
    address = Kallsyms.load().resolve("init_stack")
    assert _try_open(address, 8, HW_BREAKPOINT_RW) == 0


@pytest.mark.usefixtures("kernel_perf")
def test_kernel_exec_detection_matches_the_kernel() -> None:
    caps = detect_caps()
    address = Kallsyms.load().resolve("vfs_read")
    result = _try_open(address, 8, HW_BREAKPOINT_X)
    if caps.kprobes:
        assert result == 0
    else:
        assert result == errno.EINVAL
        assert "CONFIG_KPROBES" in caps.kprobes_evidence or "kprobes" in caps.kprobes_evidence
