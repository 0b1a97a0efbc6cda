"""The spill map's reader (no kernel): entries taken in order, only once complete."""

from __future__ import annotations

import struct

import pytest

from hwbkptd.arch.bpf.spill import SPILL_SEQ, SpillReader

BODY = struct.Struct("<QQ")  # a 16-byte record: (tag, value)
SLOTS = 4
ENTRY = SPILL_SEQ + BODY.size
POS = SLOTS * ENTRY
U64 = struct.Struct("<Q")


def spill_map() -> bytearray:
    return bytearray((SLOTS + 1) * ENTRY)


def hand_out(buf: bytearray, position: int, value: int, complete: bool = True) -> None:
    """What the program does: take a position, copy the record, then set its seq."""
    U64.pack_into(buf, POS, position + 1)
    at = (position % SLOTS) * ENTRY
    BODY.pack_into(buf, at + SPILL_SEQ, 9, value)
    if complete:
        U64.pack_into(buf, at, position + 1)


def test_entries_come_in_order_shaped_like_ring_records_and_free_their_slots() -> None:
    buf = spill_map()
    reader = SpillReader(buf, BODY.size, SLOTS)
    assert reader.read(BODY) == []
    hand_out(buf, 0, 100)
    hand_out(buf, 1, 101)
    assert reader.pending() == 2
    assert reader.read(BODY) == [(16, 9, 100), (16, 9, 101)]
    assert U64.unpack_from(buf, POS + 8)[0] == 2  # the tail the program reads
    assert reader.pending() == 0
    assert reader.read(BODY) == []


def test_an_entry_still_being_copied_waits_and_so_do_those_after_it() -> None:
    buf = spill_map()
    reader = SpillReader(buf, BODY.size, SLOTS)
    hand_out(buf, 0, 100)
    hand_out(buf, 1, 101, complete=False)
    hand_out(buf, 2, 102)
    assert reader.read(BODY) == [(16, 9, 100)]
    U64.pack_into(buf, 1 * ENTRY, 2)
    assert reader.read(BODY) == [(16, 9, 101), (16, 9, 102)]


def test_a_slot_reused_on_the_next_lap_is_told_apart_by_its_seq() -> None:
    buf = spill_map()
    reader = SpillReader(buf, BODY.size, SLOTS)
    for position in range(SLOTS):
        hand_out(buf, position, position)
    assert len(reader.read(BODY)) == SLOTS
    # Position 4 reuses slot 0, whose seq (1) is from the last lap: not complete.
    hand_out(buf, SLOTS, 7, complete=False)
    assert reader.read(BODY) == []
    U64.pack_into(buf, 0, SLOTS + 1)
    assert reader.read(BODY) == [(16, 9, 7)]


def test_a_reader_starts_at_the_tail_it_finds() -> None:
    buf = spill_map()
    hand_out(buf, 0, 100)
    U64.pack_into(buf, POS + 8, 1)  # taken by an earlier reader
    assert SpillReader(buf, BODY.size, SLOTS).read(BODY) == []


def test_bad_layouts_are_refused() -> None:
    with pytest.raises(ValueError, match="power of 2"):
        SpillReader(spill_map(), BODY.size, 3)
    with pytest.raises(ValueError, match="8-byte aligned"):
        SpillReader(spill_map(), 12, SLOTS)
