"""hwbkptd.core.activity: the sessions' events reach every subscriber, and only while
subscribed (issue 14: metrics and the slot-map watch are fed from here)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from hwbkptd.core.activity import Activity
from hwbkptd.core.broker_types import Identity
from hwbkptd.core.clock import ManualClock
from hwbkptd.core.errors import FailedPrecondition
from hwbkptd.core.events import Event, EventKind, Hit, Restored
from hwbkptd.core.sessions import SessionTable


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[object, ...]] = []

    def session_opened(self, session_id: str, name: str) -> None:
        self.seen.append(("opened", session_id, name))

    def session_closed(self, session_id: str, name: str) -> None:
        self.seen.append(("closed", session_id, name))

    def event(
        self, session_id: str, name: str, breakpoint_id: int, kind: EventKind, queued: bool
    ) -> None:
        self.seen.append(("event", session_id, breakpoint_id, type(kind).__name__, queued))

    def delivered(self, session_id: str, name: str, events: Sequence[Event], now_ns: int) -> None:
        self.seen.append(("delivered", session_id, [e.seq for e in events]))

    def broker_stopping(self) -> None:
        self.seen.append(("stopping",))


def _hit() -> Hit:
    return Hit(1, 1, 0, 0x400000, 0x601000, None, b"", b"", 1, 1)


def test_subscribers_see_sessions_and_events_and_unsubscribe() -> None:
    clock = ManualClock()
    activity = Activity()
    assert not activity
    table = SessionTable(clock, lambda s: None, activity)
    first, second = Recorder(), Recorder()
    stop_first = activity.subscribe(first)
    activity.subscribe(second)
    session = table.open("ide", identity=Identity(), lease_seconds=5, hit_buffer=1, retention=10)
    session.emit(3, _hit())
    session.emit(3, _hit())  # the one-hit buffer is full: dropped
    session.emit(3, Restored(tids=(1,)))
    stop_first()
    table.remove(session)
    table.remove(session)  # twice: told once
    activity.broker_stopping()
    assert first.seen == [
        ("opened", "s1", "ide"),
        ("event", "s1", 3, "Hit", True),
        ("event", "s1", 3, "Hit", False),
        ("event", "s1", 3, "Restored", True),
    ]
    assert second.seen == [*first.seen, ("closed", "s1", "ide"), ("stopping",)]


async def test_delivered_batches_are_told() -> None:
    clock = ManualClock()
    activity = Activity()
    table = SessionTable(clock, lambda s: None, activity)
    rec = Recorder()
    activity.subscribe(rec)
    session = table.open("ide", identity=Identity(), lease_seconds=5, hit_buffer=8, retention=10)
    session.emit(1, _hit())
    session.emit(1, _hit())
    session.close()
    batches: list[Sequence[Event]] = []

    async def drain() -> None:
        async for batch in session.stream(0):
            batches.append(batch)

    # A closed session's stream hands out what was queued, then says why it ends (issue 12).
    with pytest.raises(FailedPrecondition):
        await drain()
    assert [[e.seq for e in b] for b in batches] == [[1, 2]]
    assert rec.seen[-1] == ("delivered", "s1", [1, 2])
