"""hwbkpt._stream_resume: the event cursor that makes resumed streams gap- and repeat-free,
and the reconnect decisions both sessions carry out, on a manual clock."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from hwbkpt import models as m
from hwbkpt._stream_resume import (
    HEALTHY_STREAM,
    RESUME_TIMEOUT,
    EventCursor,
    Lose,
    ReadStream,
    ReconnectPolicy,
    Resume,
    StreamResume,
    Wait,
)
from hwbkpt.errors import HwbkptError, SessionLostError
from hwbkpt.v1 import broker_pb2 as pb


def _removed(seq: int) -> pb.Event:
    return pb.Event(seq=seq, breakpoint_id=1, removed=pb.Removed(reason=pb.REMOVED_REASON_CLIENT))


def _run(seq: int, count: int) -> pb.Event:
    """A HitRun of ``count`` hits numbered from ``seq``; hit i's value is seq + i."""
    return pb.Event(
        seq=seq,
        breakpoint_id=1,
        hit_run=pb.HitRun(
            shared=pb.Hit(pid=7, tid=7),
            time_offsets_ns=[0] * count,
            hit_counts=[seq + i for i in range(count)],
            values=b"".join((seq + i).to_bytes(8, "little") for i in range(count)),
            value_length=8,
        ),
    )


def _accept(cur: EventCursor, msg: pb.Event) -> list[m.Event]:
    out: list[m.Event] = []
    cur.accept(msg, out.append)
    return out


def test_cursor_drops_replayed_events() -> None:
    cur = EventCursor()
    seen = [_accept(cur, _removed(s)) for s in (1, 2, 3, 2, 3, 4)]
    assert [[e.seq for e in got] for got in seen] == [[1], [2], [3], [], [], [4]]
    assert cur.last_seq == 4
    assert cur.missed == 0


def test_cursor_counts_events_the_broker_no_longer_had() -> None:
    cur = EventCursor(last_seq=10)
    (ev,) = _accept(cur, _removed(14))
    assert ev.seq == 14
    assert cur.missed == 3


def test_cursor_expands_a_hit_run_and_drops_its_replayed_part() -> None:
    cur = EventCursor()
    got = _accept(cur, _run(1, 3))
    assert [(e.seq, e.payload.value_int) for e in got] == [(1, 1), (2, 2), (3, 3)]  # type: ignore[union-attr]
    assert cur.last_seq == 3
    # A resumed stream that replays 2..5 as one run: only 4 and 5 are new.
    got = _accept(cur, _run(2, 4))
    assert [(e.seq, e.payload.value_int) for e in got] == [(4, 4), (5, 5)]  # type: ignore[union-attr]
    assert _accept(cur, _run(3, 3)) == []
    assert cur.last_seq == 5
    assert cur.missed == 0
    (ev,) = _accept(cur, _run(9, 1))
    assert ev.seq == 9
    assert cur.missed == 3


@given(
    st.lists(
        st.tuples(st.integers(min_value=1, max_value=50), st.integers(min_value=0, max_value=4)),
        max_size=60,
    )
)
def test_cursor_yields_strictly_increasing(items: list[tuple[int, int]]) -> None:
    """Single events (run length 0) and runs mixed: every seq at most once, in order."""
    cur = EventCursor()
    out: list[int] = []
    for seq, count in items:
        msg = _run(seq, count) if count else _removed(seq)
        out += [e.seq for e in _accept(cur, msg)]
    assert out == sorted(set(out))
    assert cur.last_seq == max([0, *(s + max(c, 1) - 1 for s, c in items)])
    assert cur.missed == (out[-1] - len(out) if out else 0)


def test_unknown_event_kind_is_numbered_but_not_returned() -> None:
    cur = EventCursor()
    assert _accept(cur, pb.Event(seq=1)) == []
    assert cur.last_seq == 1


def test_backoff_is_bounded() -> None:
    delays = list(itertools.islice(ReconnectPolicy(initial=0.05, maximum=1.0).delays(), 10))
    assert delays[:3] == [0.05, 0.1, 0.2]
    assert max(delays) == 1.0
    assert delays == sorted(delays)


# --- the reconnect decisions -----------------------------------------------------------
class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


LEASE = 3.0
POLICY = ReconnectPolicy(initial=0.05, maximum=0.2, grace=1.0)
UNAVAILABLE = HwbkptError("UNAVAILABLE", "connection reset")


def _resume(after_seq: int = 0) -> tuple[StreamResume, ManualClock]:
    clock = ManualClock()
    return StreamResume("ide", LEASE, after_seq=after_seq, policy=POLICY, clock=clock), clock


def test_item10_a_break_is_resumed_after_the_last_event_received() -> None:
    resume, clock = _resume(after_seq=7)
    assert resume.start() == ReadStream(after_seq=7)
    _accept(resume.cursor, _removed(8))
    clock.now += 5
    assert resume.stream_ended(UNAVAILABLE) == Wait(0.05)
    assert resume.waited() == Resume(timeout=RESUME_TIMEOUT)
    assert resume.resume_answered(UNAVAILABLE) == Wait(0.1)
    assert resume.waited() == Resume()
    assert resume.resume_answered(None) == ReadStream(after_seq=8)
    assert resume.reconnects == 1


def test_item10_resuming_gives_up_after_lease_and_grace() -> None:
    resume, clock = _resume()
    resume.start()
    assert isinstance(resume.stream_ended(UNAVAILABLE), Wait)
    delays = []
    while True:
        clock.now += 0.5
        step = resume.resume_answered(UNAVAILABLE)
        if isinstance(step, Lose):
            break
        assert isinstance(step, Wait)
        delays.append(step.seconds)
    # Backoff doubles up to its maximum; an attempt that fails after lease + grace (the
    # ninth, 4.5 s after the break) loses the session.
    assert delays[:3] == [0.1, 0.2, 0.2]
    assert len(delays) == (LEASE + POLICY.grace) / 0.5
    assert isinstance(step.error, SessionLostError)
    assert step.error.code == "UNAVAILABLE"
    assert step.error.message == "session 'ide' could not be resumed: connection reset"


def test_item10_a_session_that_is_gone_is_lost_at_once() -> None:
    resume, _ = _resume()
    resume.start()
    gone = HwbkptError("NOT_FOUND", "no session")
    assert isinstance(resume.stream_ended(gone), Lose)
    resume, _ = _resume()
    resume.start()
    resume.stream_ended(UNAVAILABLE)
    step = resume.resume_answered(gone)
    assert isinstance(step, Lose)
    assert step.error.code == "NOT_FOUND"


def test_item10_a_stream_that_stays_up_earns_a_new_lease() -> None:
    resume, clock = _resume()
    resume.start()
    resume.stream_ended(UNAVAILABLE)
    for _ in range(3):  # resumed, then broken again at once: the same lease runs on
        clock.now += 1.0
        assert isinstance(resume.resume_answered(None), ReadStream)
        assert isinstance(resume.stream_ended(None), Wait)
    clock.now += 1.5
    resume.resume_answered(None)
    step = resume.stream_ended(None)
    assert isinstance(step, Lose)
    assert step.error.message.endswith("the event stream keeps ending")
    # The same breaks, each after a healthy stream: never lost, the backoff starts over.
    resume, clock = _resume()
    resume.start()
    for _ in range(10):
        clock.now += HEALTHY_STREAM
        assert resume.stream_ended(UNAVAILABLE) == Wait(POLICY.initial)
        assert isinstance(resume.resume_answered(None), ReadStream)
    assert resume.reconnects == 10


# Issue 12: the broker ends a stream on purpose with its own status; the loop tells them apart.
def test_item12_a_replaced_stream_is_lost_without_resuming() -> None:
    resume, _ = _resume()
    resume.start()
    replaced = HwbkptError("ABORTED", "the event stream was replaced by a newer stream")
    step = resume.stream_ended(replaced)
    assert isinstance(step, Lose)  # no ResumeSession: it would take the stream back
    assert step.error.code == "ABORTED"
    assert "replaced by a newer stream" in step.error.message


def test_item12_a_closed_session_is_lost_and_a_shutdown_is_resumed() -> None:
    resume, _ = _resume()
    resume.start()
    step = resume.stream_ended(HwbkptError("FAILED_PRECONDITION", "the session was closed"))
    assert isinstance(step, Lose)
    assert step.error.code == "FAILED_PRECONDITION"
    resume, _ = _resume()
    resume.start()
    shutdown = HwbkptError("UNAVAILABLE", "the broker is shutting down")
    assert resume.stream_ended(shutdown) == Wait(POLICY.initial)
    assert resume.waited() == Resume()
