"""hwbkptd.api.convert_events: the event stream to the wire (the hit path's last step)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hwbkpt._stream_resume import EventCursor
from hwbkpt.v1 import broker_pb2
from hwbkptd.api import convert, convert_events
from hwbkptd.core.events import (
    Displaced,
    Event,
    EventKind,
    HaltTimeout,
    Hit,
    HitsDropped,
    Removed,
    Restored,
    StateChanged,
    TargetExec,
    TargetExited,
)
from hwbkptd.core.model import Access, PendingReason, RequestState

HIT = Hit(
    pid=7,
    tid=8,
    cpu=-1,
    ip=0x401000,
    address=0x1000,
    access=None,
    value=b"\x02\x00\x00\x00",
    old_value=b"\x01\x00\x00\x00",
    hit_count=2,
    generation=9,
    halted=True,
    ip_symbol="main+0x10",
    value_late=True,
    call_chain=((0x401000, "main+0x10"), (0x400800, "")),
)


@pytest.mark.parametrize(
    ("kind", "which"),
    [
        (StateChanged(RequestState.PENDING, PendingReason.EXTERNAL, (), (7,)), "state"),
        (HIT, "hit"),
        (Displaced((7, 8), 4, "tracer", 75), "displaced"),
        (Restored((7,)), "restored"),
        (Removed("lease"), "removed"),
        (HitsDropped(12), "hits_dropped"),
        (TargetExited(7, 8, -9), "target_exited"),
        (HaltTimeout(8, 30.0), "halt_timeout"),
        (TargetExec(7), "target_exec"),
    ],
)
def test_event_kinds(kind: EventKind, which: str) -> None:
    msg = convert_events.event_to_proto(
        Event(seq=5, time_ns=1_700_000_000_123_456_789, breakpoint_id=3, kind=kind)
    )
    assert msg.WhichOneof("kind") == which
    assert msg.seq == 5
    assert msg.breakpoint_id == 3
    assert msg.time.ToNanoseconds() == 1_700_000_000_123_456_789


def test_event_payloads() -> None:
    def one(kind: EventKind) -> broker_pb2.Event:
        return convert_events.event_to_proto(Event(1, 0, 1, kind))

    hit = one(HIT).hit
    assert (hit.pid, hit.tid, hit.cpu, hit.ip, hit.address) == (7, 8, -1, 0x401000, 0x1000)
    assert hit.access == broker_pb2.ACCESS_UNSPECIFIED
    assert (hit.value, hit.old_value) == (b"\x02\x00\x00\x00", b"\x01\x00\x00\x00")
    assert (hit.hit_count, hit.generation, hit.halted) == (2, 9, True)
    assert (hit.ip_symbol, hit.value_late) == ("main+0x10", True)
    assert [(f.ip, f.symbol) for f in hit.call_chain] == [(0x401000, "main+0x10"), (0x400800, "")]
    displaced = one(Displaced((7, 8), 4, "tracer", 75)).displaced
    assert list(displaced.tids) == [7, 8]
    assert (displaced.by_breakpoint_id, displaced.by_session, displaced.by_priority) == (
        4,
        "tracer",
        75,
    )
    state = one(StateChanged(RequestState.PENDING, PendingReason.EXTERNAL, (), (7,))).state
    assert state.state == broker_pb2.BREAKPOINT_STATE_PENDING
    assert state.pending_reason == broker_pb2.PENDING_REASON_EXTERNAL
    assert list(state.pending_tids) == [7]
    assert one(TargetExited(7, 8, -9)).target_exited.exit_code == -9
    assert one(HaltTimeout(8, 30.25)).halt_timeout.halted_for.ToNanoseconds() == 30_250_000_000
    assert one(HitsDropped(12)).hits_dropped.count == 12
    assert one(Removed("lease")).removed.reason == broker_pb2.REMOVED_REASON_LEASE


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=2**63 - 1),
            st.sampled_from([None, *Access]),
            st.binary(max_size=8),
            st.booleans(),
        ),
        max_size=8,
    )
)
def test_a_batch_is_its_events_in_order(
    specs: list[tuple[int, Access | None, bytes, bool]],
) -> None:
    events = [
        Event(
            seq=i + 1,
            time_ns=time_ns,
            breakpoint_id=i,
            kind=Hit(
                pid=1,
                tid=2,
                cpu=i - 1,
                ip=0x401000,
                address=0x1000,
                access=access,
                value=value,
                old_value=value[::-1],
                hit_count=i,
                generation=3,
                halted=flag,
                ip_symbol="main" if flag else "",
                value_late=not flag,
            ),
        )
        for i, (time_ns, access, value, flag) in enumerate(specs)
    ]
    events.append(Event(seq=len(events) + 1, time_ns=5, breakpoint_id=0, kind=HitsDropped(3)))
    batch = convert_events.events_to_proto(events)
    assert list(batch.events) == [convert_events.event_to_proto(e) for e in events]
    for msg, event in zip(batch.events, events, strict=True):
        assert msg.time.ToNanoseconds() == event.time_ns
        if isinstance(event.kind, Hit):
            assert msg.hit.access == convert.access_to_proto(event.kind.access)
            assert (msg.hit.value, msg.hit.old_value) == (event.kind.value, event.kind.old_value)
            assert (msg.hit.cpu, msg.hit.halted) == (event.kind.cpu, event.kind.halted)
            assert msg.hit.value_late == event.kind.value_late


# --- issue 11 item 6: runs of hits share a template of their common fields ---------------
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1]),  # pid, tid, ip, address, generation (0: nothing set)
            st.sampled_from([-1, 0, 1]),  # cpu
            st.sampled_from([None, Access.WRITE, Access.READ_WRITE]),
            st.sampled_from([b"", b"\x00" * 8, b"\x05"]),
            st.booleans(),  # words, halted and a call chain now and then
        ),
        max_size=20,
    )
)
def test_item6_a_run_of_hits_is_converted_as_each_hit_alone(
    specs: list[tuple[int, int, Access | None, bytes, bool]],
) -> None:
    events = []
    for i, (same, cpu, access, value, extra) in enumerate(specs):
        hit = Hit(
            same, same, cpu, same, same, access, value, value[:1], i, same, extra, "", False,
            ((1, "f"),) if extra and i % 3 == 0 else (),
        )  # fmt: skip
        if extra:
            hit.ip_line, hit.address_symbol = "a.c:3", "counter"
        events.append(Event(i + 1, i, same, hit))
    batch = convert_events.events_to_proto(events)
    assert list(batch.events) == [convert_events.event_to_proto(e) for e in events]
    assert all(msg.WhichOneof("kind") == "hit" for msg in batch.events)


# --- issue 11 item 6: a stream that asks for hit_runs gets runs of like hits as one event --
def _client_events(batch: broker_pb2.StreamEventsResponse) -> list[object]:
    """What the Python client's sessions make of a stream message."""
    cursor = EventCursor()
    out: list[object] = []
    for msg in batch.events:
        cursor.accept(msg, out.append)
    return out


@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1]),  # pid, tid, ip, address, generation, request
            st.sampled_from([-1, 0]),  # cpu
            st.sampled_from([b"\x00" * 8, b"\x05", b"\x01\x02\x03\x04"]),  # value
            st.sampled_from([b"", b"\x09"]),  # old value
            st.sampled_from(["", "member", "chain", "words", "halted", "state"]),
            st.integers(min_value=-5_000, max_value=5_000),  # time step (ns)
        ),
        max_size=30,
    )
)
@settings(max_examples=400)
# The cases a run must end on, each between two hits alike in every other field.
@example([(0, 0, b"\x05", b"", "", 1), (0, 0, b"\x05", b"\x09", "", 1)])
@example([(0, 0, b"\x05", b"\x09", "", 1), (0, 0, b"\x05", b"", "", 1)])
@example([(0, 0, b"\x05", b"", "", 1), (0, 0, b"\x05", b"", "member", 1)])
@example([(0, 0, b"\x05", b"", "words", 1), (0, 0, b"\x05", b"", "words", -1)])
@example([(0, 0, b"\x05", b"", "", 1), (0, 0, b"\x05", b"", "halted", 1)])
@example([(0, 0, b"\x05", b"", "", 1), (0, 0, b"\x05", b"", "chain", 1)])
def test_item6_hit_runs_give_the_client_the_same_events(
    specs: list[tuple[int, int, bytes, bytes, str, int]],
) -> None:
    events: list[Event] = []
    time_ns = 1_700_000_000_123_456_789
    for i, (same, cpu, value, old, extra, step) in enumerate(specs):
        time_ns += step
        kind: EventKind
        if extra == "state":
            kind = StateChanged(RequestState.INSTALLED, PendingReason.NONE, (same,), ())
        else:
            kind = Hit(
                same, same, cpu, same, same, Access.WRITE, value, old, i * 7, same,
                extra == "halted", "", False, ((1, "f"),) if extra == "chain" else (),
                "a.c:3" if extra == "words" else "", "n" if extra == "words" and step > 0 else "",
                "m" if extra == "member" else "",
            )  # fmt: skip
        events.append(Event(i + 1, time_ns, same + 1, kind))
    plain = convert_events.events_to_proto(events)
    runs = convert_events.events_to_proto(events, hit_runs=True)
    assert all(msg.WhichOneof("kind") != "hit_run" for msg in plain.events)
    assert _client_events(runs) == _client_events(plain)
    assert len(_client_events(plain)) == len(events)


def test_item6_a_run_is_one_event_with_the_shared_fields_once() -> None:
    def hit(value: int, tid: int = 8) -> Hit:
        return Hit(7, tid, 1, 0x401000, 0x1000, Access.WRITE, value.to_bytes(8, "little"),
                   (value - 1).to_bytes(8, "little"), value, 3)  # fmt: skip

    events = [Event(i + 1, 1_000 + 10 * i, 4, hit(i + 1)) for i in range(3)]
    events.append(Event(4, 1_040, 4, hit(4, tid=9)))  # another thread: a hit alone
    batch = convert_events.events_to_proto(events, hit_runs=True)
    assert [m.WhichOneof("kind") for m in batch.events] == ["hit_run", "hit"]
    first = batch.events[0]
    assert (first.seq, first.breakpoint_id, first.time.ToNanoseconds()) == (1, 4, 1_000)
    run = first.hit_run
    assert (run.shared.pid, run.shared.tid, run.shared.ip, run.shared.access) == (
        7, 8, 0x401000, broker_pb2.ACCESS_WRITE,
    )  # fmt: skip
    assert (run.shared.value, run.shared.old_value, run.shared.hit_count) == (b"", b"", 0)
    assert list(run.time_offsets_ns) == [0, 10, 20]
    assert list(run.hit_counts) == [1, 2, 3]
    assert run.values == b"".join(i.to_bytes(8, "little") for i in (1, 2, 3))
    assert run.old_values == b"".join(i.to_bytes(8, "little") for i in (0, 1, 2))
    assert (run.value_length, run.old_value_length) == (8, 8)
    assert batch.events[1].seq == 4
