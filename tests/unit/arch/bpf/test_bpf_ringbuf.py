"""The ring buffer reader's batch read (issue 11 item 6), on a file laid out as the map is.

A BPF ring buffer map mmaps as: the consumer page, the producer page, then the data area
twice in a row. A memfd laid out the same way (each record written at its offset and
again one data size further, as the double mapping shows it) stands in for the map, so
busy, discarded and odd records and the wrap can be placed exactly.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwbkptd.arch.bpf import ringbuf
from hwbkptd.arch.bpf.ringbuf import RingbufReader

PAGE = mmap.PAGESIZE
SIZE = 4096
BODY = struct.Struct("<QQ")  # a 16-byte record: (n, n * 3)
BUSY, DISCARD = 1 << 31, 1 << 30


class FakeRing:
    def __init__(self) -> None:
        self.fd = os.memfd_create("ring")
        os.ftruncate(self.fd, 2 * PAGE + 2 * SIZE)
        self.prod = 0
        self.reader = RingbufReader(self.fd, SIZE)

    def put(self, length: int, body: bytes, flags: int = 0) -> int:
        """One record at the producer position; returns its position."""
        pos = self.prod
        raw = struct.pack("<II", length | flags, 0) + body
        raw += bytes(-len(raw) % 8)
        for base in (pos % SIZE, pos % SIZE + SIZE):
            end = min(base + len(raw), 2 * SIZE)
            os.pwrite(self.fd, raw[: end - base], 2 * PAGE + base)
        self.prod = pos + len(raw)
        os.pwrite(self.fd, struct.pack("<Q", self.prod), PAGE)
        return pos

    def commit(self, pos: int, length: int) -> None:
        """Clear a busy record's flags (its producer finished writing it)."""
        for base in (pos % SIZE, pos % SIZE + SIZE):
            if base < 2 * SIZE:
                os.pwrite(self.fd, struct.pack("<I", length), 2 * PAGE + base)

    @property
    def cons(self) -> int:
        return int(struct.unpack("<Q", os.pread(self.fd, 8, 0))[0])

    def close(self) -> None:
        self.reader.close()
        os.close(self.fd)


@pytest.fixture
def ring() -> Iterator[FakeRing]:
    r = FakeRing()
    yield r
    r.close()


def record(n: int) -> bytes:
    return BODY.pack(n, 3 * n)


def test_item6_a_batch_stops_at_a_busy_record_and_resumes_when_it_is_done(
    ring: FakeRing,
) -> None:
    for n in range(3):
        ring.put(BODY.size, record(n))
    busy = ring.put(BODY.size, record(3), BUSY)
    ring.put(BODY.size, record(4))
    got, odd = ring.reader.read_batch(BODY)
    assert [r[1:] for r in got] == [(n, 3 * n) for n in range(3)]
    assert all(r[0] == BODY.size for r in got)
    assert odd == 0
    assert ring.cons == busy  # the busy record's space is not handed back
    ring.commit(busy, BODY.size)
    got, _ = ring.reader.read_batch(BODY)
    assert [r[1] for r in got] == [3, 4]
    assert ring.cons == ring.prod
    assert ring.reader.read_batch(BODY) == ([], 0)


def test_item6_discarded_and_odd_records_are_skipped_and_odd_ones_counted(
    ring: FakeRing,
) -> None:
    ring.put(BODY.size, record(1))
    ring.put(BODY.size, record(2), DISCARD)
    ring.put(4, b"abcd")  # another length: not ours to unpack
    ring.put(BODY.size, record(3))
    got, odd = ring.reader.read_batch(BODY)
    assert [r[1] for r in got] == [1, 3]
    assert odd == 1
    assert ring.cons == ring.prod


@settings(max_examples=40)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from(["ok", "ok", "ok", "discard", "odd"])),
        max_size=12,
    )
)
def test_item6_batches_read_every_record_in_order_across_the_wrap(
    rounds: list[tuple[int, str]],
) -> None:
    ring = FakeRing()
    try:
        n = 0
        for count, kind in rounds:
            expected = []
            for _ in range(count):
                ring.put(BODY.size, record(n))
                expected.append(n)
                n += 1
            odd = 0
            if kind == "discard":
                ring.put(BODY.size, record(10**6), DISCARD)
            elif kind == "odd":
                ring.put(20, bytes(20))
                odd = 1
            got, skipped = ring.reader.read_batch(BODY)
            assert [r[1] for r in got] == expected
            assert skipped == odd
            assert ring.cons == ring.prod
    finally:
        ring.close()


def test_item6_a_record_committed_between_the_check_and_its_reread_is_read_not_skipped(
    ring: FakeRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The span's length words show record 1 busy; its producer commits it before the
    reader reads that length again, alone (what CI once saw: a hit lost as ``malformed``)."""
    ring.put(BODY.size, record(0))
    busy = ring.put(BODY.size, record(1), BUSY)
    ring.put(BODY.size, record(2))
    length = struct.Struct("<I")

    class CommittedMeanwhile:
        def unpack_from(self, data: memoryview, offset: int) -> tuple[int]:
            ring.commit(busy, BODY.size)
            got: tuple[int] = length.unpack_from(data, offset)
            return got

    monkeypatch.setattr(ringbuf, "_LEN", CommittedMeanwhile())
    got, odd = ring.reader.read_batch(BODY)
    assert [r[1] for r in got] == [0, 1, 2]
    assert odd == 0
    assert ring.cons == ring.prod
