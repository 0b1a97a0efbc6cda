"""hwbkpt._common: the event cursor that makes resumed streams gap- and repeat-free."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from hwbkpt._common import EventCursor, ReconnectPolicy
from hwbkpt.v1 import broker_pb2 as pb


def _removed(seq: int) -> pb.Event:
    return pb.Event(seq=seq, breakpoint_id=1, removed=pb.Removed(reason="client"))


def test_cursor_drops_replayed_events() -> None:
    cur = EventCursor()
    seen = [cur.accept(_removed(s)) for s in (1, 2, 3, 2, 3, 4)]
    assert [e.seq if e else None for e in seen] == [1, 2, 3, None, None, 4]
    assert cur.last_seq == 4
    assert cur.missed == 0


def test_cursor_counts_events_the_broker_no_longer_had() -> None:
    cur = EventCursor(last_seq=10)
    ev = cur.accept(_removed(14))
    assert ev is not None
    assert ev.seq == 14
    assert cur.missed == 3


@given(st.lists(st.integers(min_value=1, max_value=50), max_size=60))
def test_cursor_yields_strictly_increasing(seqs: list[int]) -> None:
    cur = EventCursor()
    out = [e.seq for e in (cur.accept(_removed(s)) for s in seqs) if e is not None]
    assert out == sorted(set(out))
    assert cur.last_seq == max([0, *seqs])
    assert cur.missed == (out[-1] - len(out) if out else 0)


def test_unknown_event_kind_is_numbered_but_not_returned() -> None:
    cur = EventCursor()
    assert cur.accept(pb.Event(seq=1)) is None
    assert cur.last_seq == 1


def test_backoff_is_bounded() -> None:
    delays = list(itertools.islice(ReconnectPolicy(initial=0.05, maximum=1.0).delays(), 10))
    assert delays[:3] == [0.05, 0.1, 0.2]
    assert max(delays) == 1.0
    assert delays == sorted(delays)
