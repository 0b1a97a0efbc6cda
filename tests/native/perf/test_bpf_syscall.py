"""bpf(2) through ctypes and the hit pipe's maps (issue 11 item 1), on the real kernel."""

from __future__ import annotations

import ctypes
import os
import struct

import pytest
from native_support import require_native

from hwbkptd.arch.bpf import syscall as bpf
from hwbkptd.arch.bpf.asm import R0, assemble, exit_, mov
from hwbkptd.arch.bpf.hitprog import RECORD, SlotConf, parse_record
from hwbkptd.arch.bpf.pipe import HitPipe, probe_bpf
from hwbkptd.arch.bpf.spill import SPILL_SLOTS

pytestmark = [pytest.mark.native]


@pytest.fixture(autouse=True)
def _bpf_here() -> None:
    ok, why = probe_bpf()
    if not ok:
        require_native(f"BPF unavailable: {why}")


def test_item1_a_refused_program_carries_the_verifier_log() -> None:
    with pytest.raises(bpf.VerifierError) as err:
        bpf.prog_load(bpf.PROG_PERF_EVENT, assemble([exit_()]), "bad")  # r0 never set
    assert "R0 !read_ok" in err.value.log
    assert "R0 !read_ok" in str(err.value)


def test_item1_a_minimal_program_loads() -> None:
    fd = bpf.prog_load(bpf.PROG_PERF_EVENT, assemble([mov(R0, 0), exit_()]), "ok")
    os.close(fd)


def test_item1_map_update_lookup_delete() -> None:
    fd = bpf.map_create(bpf.MAP_HASH, 8, 8, 4, "t")
    try:
        key = struct.pack("<Q", 5)
        assert bpf.map_lookup(fd, key, 8) is None
        bpf.map_update(fd, key, struct.pack("<Q", 7))
        assert bpf.map_lookup(fd, key, 8) == struct.pack("<Q", 7)
        assert bpf.map_delete(fd, key)
        assert not bpf.map_delete(fd, key)
    finally:
        os.close(fd)


def test_item1_slot_keys_start_with_zeroed_counts_and_are_reused() -> None:
    pipe = HitPipe(ring_bytes=1 << 12, max_events=4)
    try:
        key = pipe.new_slot(SlotConf(((0x1000, 8),)))
        counts = pipe.counts(key)
        assert (counts.prev, counts.hits, counts.dropped, counts.retried) == ((0,) * 4, 0, 0, 0)
        pipe.free_slot(key)
        assert pipe.new_slot(SlotConf(())) == key
        assert pipe.reader.pending() == 0
        assert pipe.reader.read(lambda data, off, n: None) == 0
    finally:
        pipe.close()


def test_item1_records_the_full_ring_refuses_are_spilled_in_order_then_counted_dropped() -> None:
    """This thread writes a watched variable 300 times with nobody reading: the 4 KiB ring
    takes the first records, the spill map the next half of its slots, the rest are
    dropped and counted. Every hit is counted; what was kept is exact and in order."""
    from hwbkptd.arch.linux.perf_event import HW_BREAKPOINT_W, breakpoint_attr, perf_event_open

    n = 300
    pipe = HitPipe(ring_bytes=1 << 12, max_events=4)
    var = ctypes.c_uint64(0)
    try:
        key = pipe.new_slot(SlotConf(((ctypes.addressof(var), 8),)))
        fd = perf_event_open(breakpoint_attr(ctypes.addressof(var), 8, HW_BREAKPOINT_W), 0, -1)
        try:
            link = pipe.attach(fd, 1, key)
            for i in range(1, n + 1):
                var.value = i
            os.close(link)
        finally:
            os.close(fd)
        ring: list[int] = []
        pipe.reader.read(lambda data, off, size: ring.append(parse_record(data, off).values[0]))
        spilled = [rec[10] for rec in pipe.spill.read(RECORD)]  # length, cookie, ..., val[0]
        counts = pipe.counts(key)
        assert counts.hits == n
        assert ring
        assert ring == list(range(1, len(ring) + 1))
        assert spilled == list(range(len(ring) + 1, len(ring) + SPILL_SLOTS // 2 + 1))
        assert counts.spilled == SPILL_SLOTS // 2
        assert counts.dropped == n - len(ring) - len(spilled)
    finally:
        pipe.close()
