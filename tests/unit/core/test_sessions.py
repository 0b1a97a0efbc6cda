"""Sessions: tokens, leases and the single event stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hwbkptd.core.broker_types import Identity
from hwbkptd.core.clock import ManualClock
from hwbkptd.core.errors import Aborted, FailedPrecondition, NotFound, Unavailable
from hwbkptd.core.events import Event, Removed
from hwbkptd.core.sessions import Session, SessionTable


def table(expired: list[Session], clock: ManualClock | None = None) -> SessionTable:
    return SessionTable(clock or ManualClock(), expired.append)


def open_one(sessions: SessionTable, lease: float = 10.0, name: str = "A") -> Session:
    return sessions.open(name, identity=Identity(), lease_seconds=lease, hit_buffer=8, retention=64)


async def test_ids_and_tokens() -> None:
    sessions = table([])
    a, b = open_one(sessions), open_one(sessions, name="B")
    assert (a.id, b.id) == ("s1", "s2")
    assert a.token != b.token
    assert len(a.token) >= 32
    assert sessions.get(a.token) is a
    assert sessions.by_id("s2") is b
    assert len(sessions) == 2
    assert list(sessions) == [a, b]
    with pytest.raises(NotFound) as err:
        sessions.get("nope")
    assert (err.value.field, err.value.message) == ("token", "no such session")
    sessions.remove(a)
    with pytest.raises(NotFound):
        sessions.get(a.token)
    assert sessions.by_id("s1") is None


async def test_the_lease_runs_without_a_stream_and_any_call_restarts_it() -> None:
    expired: list[Session] = []
    clock = ManualClock(start=1000.0)
    sessions = table(expired, clock)
    a = open_one(sessions, lease=10)
    assert a.lease_deadline == 1010.0
    clock.advance(6)
    sessions.get(a.token)  # a sign of life
    assert a.lease_deadline == 1016.0
    clock.advance(6)  # past the first deadline: the restart cancelled it
    assert expired == []
    clock.advance(3.5)
    assert expired == []
    clock.advance(0.5)
    assert expired == [a]
    assert clock.pending() == 0


async def test_an_attached_stream_stops_the_lease_and_its_end_starts_it() -> None:
    expired: list[Session] = []
    clock = ManualClock()
    sessions = table(expired, clock)
    a = open_one(sessions, lease=5)
    stream = a.stream(0)
    reader = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)  # the reader attaches and waits for events
    assert a.attached
    assert a.lease_deadline is None
    assert clock.pending() == 0
    clock.advance(100)
    assert expired == []
    a.emit(1, Removed("client"))
    batch = await asyncio.wait_for(reader, 1)
    assert [e.seq for e in batch] == [1]
    await stream.aclose()  # type: ignore[attr-defined]
    assert not a.attached
    assert a.lease_deadline == clock.monotonic() + 5
    clock.advance(4.5)
    assert expired == []
    clock.advance(0.5)
    assert expired == [a]


async def test_removed_and_closed_sessions_keep_no_lease() -> None:
    expired: list[Session] = []
    clock = ManualClock()
    sessions = table(expired, clock)
    a, b = open_one(sessions, name="A"), open_one(sessions, name="B")
    sessions.remove(a)
    b.close()
    assert clock.pending() == 0
    b.start_lease()  # a closed session's lease never starts again
    clock.advance(100)
    assert expired == []


async def drain(stream: AsyncIterator[list[Event]]) -> tuple[list[Event], Exception]:
    """Every event of a stream, and the error it ended with (a stream never ends quietly)."""
    got: list[Event] = []
    try:
        async for batch in stream:
            got += batch
    except Exception as err:
        return got, err
    raise AssertionError("the stream ended without saying why")


# Issue 12: a replaced stream and a closed session's stream end differently (ABORTED vs
# FAILED_PRECONDITION), so that a reconnect loop can tell them apart.
async def test_item12_a_newer_stream_ends_the_older_one_aborted() -> None:
    sessions = table([])
    a = open_one(sessions)
    old = a.stream(0)
    waiting = asyncio.ensure_future(anext(old))
    await asyncio.sleep(0)
    new = a.stream(0)
    new_waiting = asyncio.ensure_future(anext(new))
    await asyncio.sleep(0)
    with pytest.raises(Aborted, match="replaced by a newer stream"):
        await asyncio.wait_for(waiting, 1)
    assert a.attached  # the old one's end does not detach the new one
    a.emit(3, Removed("client"))
    batch = await asyncio.wait_for(new_waiting, 1)
    assert batch[0].breakpoint_id == 3
    await new.aclose()  # type: ignore[attr-defined]


async def test_item12_close_hands_out_what_is_queued_then_fails_precondition() -> None:
    sessions = table([])
    a = open_one(sessions)
    a.emit(1, Removed("x"))
    a.emit(2, Removed("y"))
    a.close()
    got, err = await drain(a.stream(0))
    assert [e.breakpoint_id for e in got] == [1, 2]
    assert isinstance(err, FailedPrecondition)
    assert err.message == "the session was closed"


async def test_item12_a_shutdown_ends_the_stream_unavailable() -> None:
    sessions = table([])
    a = open_one(sessions)
    a.emit(1, Removed("x"))
    a.close(Unavailable("the broker is shutting down"))
    got, err = await drain(a.stream(0))
    assert [e.breakpoint_id for e in got] == [1]
    assert isinstance(err, Unavailable)


async def test_replay_after_a_given_number() -> None:
    sessions = table([])
    a = open_one(sessions)
    for n in range(5):
        a.emit(n, Removed("x"), time_ns=n)
    a.close()
    got, _ = await drain(a.stream(3))
    assert [e.seq for e in got] == [4, 5]
