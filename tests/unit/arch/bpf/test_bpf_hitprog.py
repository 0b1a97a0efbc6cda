"""The hit program's data layouts (issue 11 items 1 and 5): slot configuration, records."""

from __future__ import annotations

import pytest

from hwbkptd.arch.bpf.asm import Helper
from hwbkptd.arch.bpf.hitprog import (
    CONF,
    FILTER_CHANGED,
    FILTER_EQUALS,
    FILTER_NONE,
    RECORD,
    RING_ATTEMPTS,
    STATE,
    HitMaps,
    SlotConf,
    hit_program,
    parse_record,
)
from hwbkptd.arch.bpf.keys import entry_filters
from hwbkptd.core.mechanism import SlotEntry
from hwbkptd.core.model import Access, Chunk, Filter


def test_item1_slot_conf_packs_regions_flags_and_filters() -> None:
    conf = SlotConf(((0x1000, 8), (0x1004, 4)), filters=((FILTER_EQUALS, b"\x07"), (1, b"")))
    raw = CONF.unpack(conf.pack())
    assert raw[:2] == (2, 2)  # two regions; CONF_FILTER (every holder filters)
    assert raw[2:6] == (0x1000, 0x1004, 0, 0)
    assert raw[6:10] == (8, 4, 0, 0)
    assert raw[10:14] == (FILTER_EQUALS, FILTER_CHANGED, 0, 0)
    assert raw[14] == 7


def test_item5_a_holder_without_filter_turns_kernel_filtering_off() -> None:
    conf = SlotConf(((0x1000, 8), (0x1000, 8)), filters=((FILTER_EQUALS, b"\x01"), (0, b"")))
    assert not conf.filtering
    assert CONF.unpack(conf.pack())[1] == 0


def test_item1_regions_the_program_cannot_read_are_refused() -> None:
    with pytest.raises(ValueError, match="up to 4 regions"):
        SlotConf(((0x1000, 16),)).pack()


def test_item1_record_parses_values_up_to_its_count() -> None:
    data = RECORD.pack(9, 100, 11, 10, 1, 2, 0x401000, 0x404000, 5, 1, 2, 3, 4, 0, 1, 2, 3)
    rec = parse_record(data)
    assert (rec.cookie, rec.time, rec.tid, rec.pid, rec.cpu) == (9, 100, 11, 10, 1)
    assert (rec.ip, rec.addr, rec.hits) == (0x401000, 0x404000, 5)
    assert rec.values == (1, 2)
    assert rec.old == (0, 1)


def test_item5_entry_filters_prefer_equals() -> None:
    chunk = Chunk("dr", 0x1000, 8, Access.WRITE)
    entry = SlotEntry(
        chunk,
        regions=((0x1000, 8),) * 3,
        value_filters=(
            Filter(equals=b"\x01" * 8, changed_only=True),
            Filter(changed_only=True),
            None,
        ),
    )
    assert entry_filters(entry) == (
        (FILTER_EQUALS, b"\x01" * 8),
        (FILTER_CHANGED, b""),
        (FILTER_NONE, b""),
    )


def test_item1_program_binds_its_maps() -> None:
    code = hit_program(HitMaps(3, 4, 5, 6, 7, 8, 9))
    assert len(code) % 8 == 0
    # Every map load is BPF_LD|BPF_DW|BPF_IMM with src BPF_PSEUDO_MAP_FD and the fd.
    fds = {
        int.from_bytes(code[i + 4 : i + 8], "little")
        for i in range(0, len(code), 8)
        if code[i] == 0x18 and code[i + 1] >> 4 == 1
    }
    assert fds == {3, 4, 5, 6, 7, 8, 9}


def calls(code: bytes, helper: int) -> int:
    """How many BPF_JMP|BPF_CALL instructions call ``helper``."""
    return sum(
        1
        for i in range(0, len(code), 8)
        if code[i] == 0x85 and int.from_bytes(code[i + 4 : i + 8], "little") == helper
    )


def test_item1_a_refused_ring_write_is_tried_again_before_it_counts_as_dropped() -> None:
    code = hit_program(HitMaps(3, 4, 5, 6, 7, 8, 9))
    assert RING_ATTEMPTS > 1
    assert calls(code, Helper.RINGBUF_OUTPUT) == RING_ATTEMPTS
    # prev[4], hits, dropped, retried, spilled
    assert STATE.size == 8 * 8
