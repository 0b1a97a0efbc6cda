"""The perf ring reader and record parser on synthetic rings (no perf events)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwbkptd.arch.linux.perf_event import (
    SAMPLE_ADDR,
    SAMPLE_CALLCHAIN,
    SAMPLE_CPU,
    SAMPLE_ID,
    SAMPLE_IP,
    SAMPLE_PERIOD,
    SAMPLE_TID,
    SAMPLE_TIME,
)
from hwbkptd.arch.perf.ring import (
    MISC_COMM_EXEC,
    RECORD_COMM,
    RECORD_EXIT,
    RECORD_FORK,
    RECORD_LOST,
    RECORD_LOST_SAMPLES,
    RECORD_SAMPLE,
    RECORD_THROTTLE,
    SAMPLE_IDENTIFIER,
    RingBuffer,
    Sample,
    SampleFormat,
    TaskRecord,
)

STANDARD = SAMPLE_IDENTIFIER | SAMPLE_IP | SAMPLE_TID | SAMPLE_TIME | SAMPLE_ADDR | SAMPLE_CPU
PAGE = 4096
KERNEL = 0xFFFFFFFF81000000
PERF_CONTEXT_KERNEL = (1 << 64) - 128


def record(rtype: int, body: bytes) -> bytes:
    assert len(body) % 8 == 0
    return struct.pack("<IHH", rtype, 1, 8 + len(body)) + body


def sample_record(s: Sample, sample_type: int = STANDARD) -> bytes:
    """Encode a sample the way the kernel lays it out (perf_event.h order)."""
    body = b""
    if sample_type & SAMPLE_IDENTIFIER:
        body += struct.pack("<Q", s.id)
    if sample_type & SAMPLE_IP:
        body += struct.pack("<Q", s.ip)
    if sample_type & SAMPLE_TID:
        body += struct.pack("<II", s.pid, s.tid)
    if sample_type & SAMPLE_TIME:
        body += struct.pack("<Q", s.time)
    if sample_type & SAMPLE_ADDR:
        body += struct.pack("<Q", s.addr)
    if sample_type & SAMPLE_ID:
        body += struct.pack("<Q", s.id)
    if sample_type & SAMPLE_CPU:
        body += struct.pack("<II", s.cpu, 0)
    if sample_type & SAMPLE_PERIOD:
        body += struct.pack("<Q", 1)
    if sample_type & SAMPLE_CALLCHAIN:
        chain = (PERF_CONTEXT_KERNEL, *s.callchain)
        body += struct.pack(f"<Q{len(chain)}Q", len(chain), *chain)
    return record(RECORD_SAMPLE, body)


def lost_record(count: int) -> bytes:
    return record(RECORD_LOST, struct.pack("<QQ", 7, count))


def make_ring(data_pages: int, tail: int, payload: bytes) -> bytearray:
    """A mapping-shaped buffer whose unread bytes are ``payload``, starting at ``tail``."""
    size = data_pages * PAGE
    buf = bytearray(PAGE + size)
    struct.pack_into("<QQQQ", buf, 1024, tail + len(payload), tail, PAGE, size)
    for i, byte in enumerate(payload):
        buf[PAGE + (tail + i) % size] = byte
    return buf


samples = st.builds(
    Sample,
    id=st.integers(0, 2**64 - 1),
    ip=st.integers(KERNEL, 2**64 - 4096),
    pid=st.integers(0, 2**32 - 1),
    tid=st.integers(0, 2**32 - 1),
    time=st.integers(0, 2**63),
    addr=st.integers(0, 2**64 - 1),
    cpu=st.integers(0, 4095),
    callchain=st.just(()),
)


@given(
    items=st.lists(st.one_of(samples, st.integers(1, 10**6)), max_size=60),
    tail=st.integers(0, 2**40),
)
def test_records_across_the_wrap_parse_back(items: list[Sample | int], tail: int) -> None:
    payload = b"".join(sample_record(i) if isinstance(i, Sample) else lost_record(i) for i in items)
    pages = 1
    while pages * PAGE < len(payload):
        pages *= 2
    ring = RingBuffer(make_ring(pages, tail, payload))
    assert ring.pending() == len(payload)
    data = ring.read()
    assert data == payload
    assert ring.pending() == 0
    assert ring.read() == b""
    batch = SampleFormat(STANDARD).parse(data)
    assert batch.samples == [i for i in items if isinstance(i, Sample)]
    assert batch.lost == sum(i for i in items if isinstance(i, int))
    assert not batch.malformed


def test_a_record_split_by_the_end_of_the_ring() -> None:
    s = Sample(5, KERNEL + 0x1C, 10, 11, 123, 0xFFFFFFFF83000000, 1)
    rec = sample_record(s)
    buf = make_ring(1, PAGE - 24, rec)  # header and 16 bytes at the end, the rest at the start
    ring = RingBuffer(buf)
    assert SampleFormat(STANDARD).parse(ring.read()).samples == [s]
    # The reader handed the space back: data_tail now equals data_head.
    head, tail = struct.unpack_from("<QQ", buf, 1024)
    assert tail == head == PAGE - 24 + len(rec)


def test_call_chains_drop_context_markers() -> None:
    st_ = STANDARD | SAMPLE_CALLCHAIN
    s = Sample(1, KERNEL, 2, 3, 4, 5, 0, (KERNEL + 1, KERNEL + 2))
    assert SampleFormat(st_).parse(sample_record(s, st_)).samples == [s]


def test_other_sample_layouts() -> None:
    st_ = SAMPLE_IP | SAMPLE_TID | SAMPLE_TIME | SAMPLE_ID | SAMPLE_PERIOD
    s = Sample(9, KERNEL, 2, 3, 4, 0, -1)
    assert SampleFormat(st_).parse(sample_record(s, st_)).samples == [s]
    both = STANDARD | SAMPLE_ID  # the kernel writes the id twice
    s2 = Sample(9, KERNEL, 2, 3, 4, 6, 1)
    assert SampleFormat(both).parse(sample_record(s2, both)).samples == [s2]


def test_unsupported_sample_bits_are_refused() -> None:
    with pytest.raises(ValueError, match="not supported"):
        SampleFormat(STANDARD | (1 << 4))  # SAMPLE_READ


def test_lost_throttle_and_unknown_records() -> None:
    data = (
        lost_record(3)
        + record(RECORD_LOST_SAMPLES, struct.pack("<Q", 4))
        + record(RECORD_THROTTLE, struct.pack("<QQQ", 1, 2, 3))
        + record(3, b"comm\0\0\0\0")
    )
    batch = SampleFormat(STANDARD).parse(data)
    assert (batch.lost, batch.throttled, batch.other, batch.malformed) == (7, 1, 1, False)


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("<IHH", RECORD_SAMPLE, 0, 0),  # size 0 would loop forever
        struct.pack("<IHH", RECORD_SAMPLE, 0, 64),  # runs past the data
        record(RECORD_SAMPLE, b"\0" * 8),  # shorter than the sample layout
    ],
)
def test_malformed_records_stop_parsing(data: bytes) -> None:
    good = sample_record(Sample(1, KERNEL, 2, 3, 4, 5, 0))
    batch = SampleFormat(STANDARD).parse(good + data)
    assert batch.malformed
    assert len(batch.samples) == 1


def test_an_overrun_is_counted_not_parsed() -> None:
    buf = make_ring(1, 0, b"")
    struct.pack_into("<Q", buf, 1024, 2 * PAGE)  # head far beyond what one page holds
    ring = RingBuffer(buf)
    assert ring.read() == b""
    assert ring.overruns == 1
    assert ring.pending() == 0


def test_bad_layouts_are_refused() -> None:
    buf = bytearray(PAGE + 3 * PAGE)
    struct.pack_into("<QQ", buf, 1040, PAGE, 3 * PAGE)
    with pytest.raises(ValueError, match="bad ring layout"):
        RingBuffer(buf)


def test_old_kernels_without_data_offset() -> None:
    buf = bytearray(PAGE + 2 * PAGE)  # data_offset/data_size left 0
    ring = RingBuffer(buf)
    assert (ring.data_offset, ring.data_size) == (PAGE, 2 * PAGE)
    ring.close()
    assert ring.read() == b""
    assert ring.pending() == 0


# --- task records (FORK/EXIT/COMM) with a sample_id trailer ----------------------------


def trailer(pid: int, tid: int, time: int, cpu: int, ident: int) -> bytes:
    """The sample_id_all trailer for STANDARD: tid, time, cpu, identifier."""
    return struct.pack("<IIQIIQ", pid, tid, time, cpu, 0, ident)


def task_record(kind: int, pid: int, ppid: int, tid: int, ptid: int, time: int) -> bytes:
    return record(
        kind, struct.pack("<IIIIQ", pid, ppid, tid, ptid, time) + trailer(pid, tid, time, 1, 77)
    )


def comm_record(pid: int, tid: int, comm: bytes, *, exec_: bool, time: int) -> bytes:
    name = comm + b"\0" * (8 - len(comm) % 8)
    body = struct.pack("<II", pid, tid) + name + trailer(pid, tid, time, 0, 78)
    return struct.pack("<IHH", RECORD_COMM, MISC_COMM_EXEC if exec_ else 0, 8 + len(body)) + body


def test_task_records_parse_with_their_trailer() -> None:
    s = Sample(5, 0x401000, 10, 12, 900, 0x601000, 1)
    data = (
        task_record(RECORD_FORK, 10, 10, 12, 10, 800)
        + sample_record(s)
        + comm_record(10, 10, b"sleep", exec_=True, time=950)
        + comm_record(10, 12, b"worker-1", exec_=False, time=960)
        + task_record(RECORD_EXIT, 10, 10, 12, 12, 1000)
    )
    batch = SampleFormat(STANDARD, tasks=True, sample_id_all=True).parse(data)
    assert batch.samples == [s]
    assert batch.tasks == [
        TaskRecord(RECORD_FORK, 10, 10, 12, 10, 800, cpu=1),
        TaskRecord(RECORD_COMM, 10, 0, 10, 0, 950, "sleep", True, 0),
        TaskRecord(RECORD_COMM, 10, 0, 12, 0, 960, "worker-1", False, 0),
        TaskRecord(RECORD_EXIT, 10, 10, 12, 12, 1000, cpu=1),
    ]
    assert (batch.other, batch.malformed) == (0, False)


def test_task_records_without_a_trailer() -> None:
    data = record(RECORD_FORK, struct.pack("<IIIIQ", 1, 1, 2, 1, 5)) + record(
        RECORD_COMM, struct.pack("<II", 1, 2) + b"ab\0\0\0\0\0\0"
    )
    batch = SampleFormat(STANDARD, tasks=True).parse(data)
    assert batch.tasks == [
        TaskRecord(RECORD_FORK, 1, 1, 2, 1, 5),
        TaskRecord(RECORD_COMM, 1, 0, 2, 0, 0, "ab"),
    ]


def test_task_records_are_other_unless_asked_for() -> None:
    data = task_record(RECORD_FORK, 10, 10, 12, 10, 800)
    batch = SampleFormat(STANDARD).parse(data)
    assert (batch.tasks, batch.other) == ([], 1)


def test_a_task_record_shorter_than_its_layout_is_malformed() -> None:
    good = task_record(RECORD_EXIT, 1, 1, 2, 2, 3)
    bad = record(RECORD_FORK, struct.pack("<IIII", 1, 1, 2, 1))  # no time, no trailer
    batch = SampleFormat(STANDARD, tasks=True, sample_id_all=True).parse(good + bad)
    assert batch.malformed
    assert len(batch.tasks) == 1


@given(
    st.lists(
        st.tuples(
            st.sampled_from([RECORD_FORK, RECORD_EXIT]),
            st.integers(1, 2**31),
            st.integers(1, 2**31),
            st.integers(0, 2**62),
        ),
        max_size=30,
    )
)
def test_task_records_round_trip(items: list[tuple[int, int, int, int]]) -> None:
    data = b"".join(task_record(k, pid, pid, tid, pid, t) for k, pid, tid, t in items)
    batch = SampleFormat(STANDARD, tasks=True, sample_id_all=True).parse(data)
    assert [(t.kind, t.pid, t.tid, t.time) for t in batch.tasks] == items
