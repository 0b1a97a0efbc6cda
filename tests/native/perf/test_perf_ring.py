"""The ring reader on a real perf ring: samples written by the kernel, parsed back."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from perf_support import BTF

from hwbkptd.arch.linux.perf_event import SAMPLE_CALLCHAIN
from hwbkptd.arch.perf.kallsyms import Kallsyms
from hwbkptd.arch.perf.percpu import (
    KERNEL_SAMPLE_TYPE,
    CpuRing,
    enable,
    event_id,
    open_kernel_breakpoint,
)
from hwbkptd.arch.perf.ring import SampleFormat, map_ring
from hwbkptd.core.model import Access, Chunk

pytestmark = [pytest.mark.native]


@pytest.mark.usefixtures("kernel_perf")
def test_a_real_ring_parses_into_the_samples_the_kernel_wrote(
    native_bins: dict[str, str], btf: Path
) -> None:
    address = Kallsyms.load().resolve("__start_BTF")
    ring = CpuRing(0, 4, KERNEL_SAMPLE_TYPE)
    fd = open_kernel_breakpoint(Chunk("dr", address, 8, Access.READ_WRITE), 0, KERNEL_SAMPLE_TYPE)
    try:
        ring.attach(fd)
        eid = event_id(fd)
        enable(fd)
        assert ring.ring.read() == b""
        t0 = time.monotonic_ns()
        toucher = subprocess.Popen(
            [native_bins["perf_kernel_touch"], "0", "3", str(BTF)], stdout=subprocess.DEVNULL
        )
        assert toucher.wait(timeout=10) == 0
        t1 = time.monotonic_ns()
        assert ring.ring.pending() > 0
        data = ring.ring.read()
        assert ring.ring.pending() == 0
        assert ring.ring.read() == b""
        batch = SampleFormat(KERNEL_SAMPLE_TYPE).parse(data)
        assert not batch.malformed
        assert batch.lost == 0
        assert len(batch.samples) == 3 * 8  # 8 traps per 8-byte read of the blob
        for s in batch.samples:
            assert s.id == eid
            assert s.addr == address
            assert s.cpu == 0
            assert s.pid == s.tid == toucher.pid
            assert t0 <= s.time <= t1
            assert s.ip >= 0xFFFF_8000_0000_0000
    finally:
        os.close(fd)
        ring.close()


def test_map_ring_wants_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        map_ring(-1, 3)


@pytest.mark.usefixtures("kernel_perf")
def test_kernel_call_chains_come_back_symbolized(native_bins: dict[str, str], btf: Path) -> None:
    ksyms = Kallsyms.load()
    sample_type = KERNEL_SAMPLE_TYPE | SAMPLE_CALLCHAIN
    chunk = Chunk("dr", ksyms.resolve("__start_BTF"), 8, Access.READ_WRITE)
    ring = CpuRing(1, 4, sample_type)
    fd = open_kernel_breakpoint(chunk, 1, sample_type)
    try:
        ring.attach(fd)
        enable(fd)
        subprocess.run(
            [native_bins["perf_kernel_touch"], "1", "1", str(BTF)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        batch = SampleFormat(sample_type).parse(ring.ring.read())
        assert len(batch.samples) == 8
        for s in batch.samples:
            chain = [ksyms.symbolize(ip) for ip in s.callchain]
            assert chain[0] == ksyms.symbolize(s.ip)  # the chain starts at the trapping ip
            assert any(name.startswith("vfs_read+") for name in chain), chain
    finally:
        os.close(fd)
        ring.close()
