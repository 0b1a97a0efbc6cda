"""Per-CPU plumbing: several breakpoint events redirected into one CPU's ring."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from perf_support import touch_kernel

from hwbkptd.arch.linux.perf_event import HW_BREAKPOINT_RW, HW_BREAKPOINT_W, HW_BREAKPOINT_X
from hwbkptd.arch.perf.kallsyms import Kallsyms
from hwbkptd.arch.perf.percpu import (
    KERNEL_SAMPLE_TYPE,
    CpuRing,
    bp_type_for,
    enable,
    errno_text,
    event_id,
    open_kernel_breakpoint,
)
from hwbkptd.arch.perf.ring import SampleFormat
from hwbkptd.core.model import Access, Chunk

pytestmark = [pytest.mark.native]


@pytest.mark.usefixtures("kernel_perf")
def test_two_slots_share_one_ring_and_are_told_apart_by_id(
    native_bins: dict[str, str], btf: Path
) -> None:
    address = Kallsyms.load().resolve("__start_BTF")
    ring = CpuRing(1, 8, KERNEL_SAMPLE_TYPE)
    chunks = [
        Chunk("dr", address, 8, Access.READ_WRITE),
        Chunk("dr", address, 4, Access.READ_WRITE),
    ]
    fds = [open_kernel_breakpoint(c, 1, KERNEL_SAMPLE_TYPE) for c in chunks]
    try:
        for fd in fds:
            ring.attach(fd)
            enable(fd)
        ids = [event_id(fd) for fd in fds]
        assert len(set(ids)) == 2
        touch_kernel(native_bins, 1, 2)
        batch = SampleFormat(KERNEL_SAMPLE_TYPE).parse(ring.ring.read())
        by_id = {i: sum(1 for s in batch.samples if s.id == i) for i in ids}
        # The 8-byte watch sees every byte copied, the 4-byte one half of them.
        assert by_id == {ids[0]: 16, ids[1]: 8}
    finally:
        for fd in fds:
            os.close(fd)
        ring.close()


def test_access_kinds_map_to_perf_types() -> None:
    assert bp_type_for(Access.WRITE) == HW_BREAKPOINT_W
    assert bp_type_for(Access.READ_WRITE) == HW_BREAKPOINT_RW
    assert bp_type_for(Access.READ) == HW_BREAKPOINT_RW  # x86 has no read-only watch
    assert bp_type_for(Access.EXEC) == HW_BREAKPOINT_X


def test_errno_text_names_the_error() -> None:
    assert errno_text(OSError(errno.ENOSPC, "x")) == "ENOSPC (No space left on device)"
