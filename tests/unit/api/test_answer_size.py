"""Issue 12: event batches over the size cap go out as several messages, in order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hwbkpt.v1 import broker_pb2
from hwbkptd.api.answer_size import MAX_MESSAGE_BYTES, split_events


def _state(seq: int, tids: int) -> broker_pb2.Event:
    return broker_pb2.Event(
        seq=seq,
        breakpoint_id=1,
        state=broker_pb2.StateChanged(pending_tids=range(100_000, 100_000 + tids)),
    )


def test_item12_256_state_events_of_10000_threads_come_under_the_cap() -> None:
    batch = broker_pb2.StreamEventsResponse(events=[_state(s, 10_000) for s in range(1, 257)])
    assert batch.ByteSize() > 4 * 1024 * 1024
    parts = list(split_events(batch))
    assert max(p.ByteSize() for p in parts) <= MAX_MESSAGE_BYTES
    assert [e for p in parts for e in p.events] == list(batch.events)


@given(st.lists(st.integers(0, 300), max_size=40), st.integers(100, 5000))
def test_item12_parts_keep_every_event_in_order(sizes: list[int], limit: int) -> None:
    batch = broker_pb2.StreamEventsResponse(events=[_state(i + 1, n) for i, n in enumerate(sizes)])
    parts = list(split_events(batch, limit))
    assert [e.seq for p in parts for e in p.events] == list(range(1, len(sizes) + 1))
    assert all(p.ByteSize() <= limit or len(p.events) == 1 for p in parts)
