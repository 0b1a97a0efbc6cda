"""bpf(2) through ctypes and the hit pipe's maps (issue 11 item 1), on the real kernel."""

from __future__ import annotations

import os
import struct

import pytest
from native_support import require_native

from hwbkptd.arch.bpf import syscall as bpf
from hwbkptd.arch.bpf.asm import R0, assemble, exit_, mov
from hwbkptd.arch.bpf.hitprog import SlotConf
from hwbkptd.arch.bpf.pipe import HitPipe, probe_bpf

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
