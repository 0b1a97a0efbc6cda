"""hwbkpt._stream_resume: the event cursor that makes resumed streams gap- and repeat-free,
and the reconnect decisions both sessions carry out, on a manual clock."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

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
    resume.cursor.accept(_removed(8))
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
