"""The event stream's resume protocol, without I/O.

A session reads ``StreamEvents(after_seq=last)``; when the stream breaks it calls
``ResumeSession`` until the broker takes it back, then reads again after the last event it
received, for at most its lease. ``StreamResume`` makes every decision of that loop (what to
do next, how long to wait, when the session is lost) and counts the events; ``Session`` and
``AsyncSession`` only carry its steps out, each with its own I/O::

    step = resume.start()                 # ReadStream
    ReadStream -> read to the end -> resume.stream_ended(error or None)
    Resume     -> ResumeSession   -> resume.resume_answered(error or None)
    Wait       -> sleep           -> resume.waited()
    Lose       -> report step.error; the stream is over
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from hwbkpt import models as m
from hwbkpt._convert import event_from_pb, hit_run_from_pb
from hwbkpt.errors import HwbkptError, SessionLostError
from hwbkpt.v1 import broker_pb2 as pb

__all__ = [
    "FATAL_CODES",
    "HEALTHY_STREAM",
    "RESUME_TIMEOUT",
    "STREAM_END_CODES",
    "EventCursor",
    "Lose",
    "ReadStream",
    "ReconnectPolicy",
    "Resume",
    "Step",
    "StreamResume",
    "Wait",
]

#: Seconds one resume attempt may take: a hung attempt must not outlast the lease.
RESUME_TIMEOUT = 5.0
#: Seconds a stream must stay up to count as healthy again after a resume.
HEALTHY_STREAM = 1.0
#: Stream failures after which resuming cannot help: the session is gone or not ours.
FATAL_CODES = frozenset(
    {"NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_ARGUMENT", "UNIMPLEMENTED"}
)
#: How the broker ends a stream on purpose, and why resuming would be wrong: ABORTED, a
#: newer stream of the session took over (another reader has it: taking it back would
#: make the two fight); FAILED_PRECONDITION, the session was closed. (UNAVAILABLE, the
#: broker shutting down, is worth a resume: it may be back within the lease.)
STREAM_END_CODES = frozenset({"ABORTED", "FAILED_PRECONDITION"})


@dataclass(slots=True)
class ReconnectPolicy:
    """Bounded exponential backoff between resume attempts, for at most ``lease + grace`` s."""

    initial: float = 0.05
    maximum: float = 1.0
    #: Extra seconds past the lease: the broker starts the lease when *it* sees the drop.
    grace: float = 1.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * 2, self.maximum)


class EventCursor:
    """Tracks the last event number seen so a resumed stream continues without repeats.

    Events at or below ``last_seq`` (a replay overlap) are dropped; a jump above
    ``last_seq + 1`` means the broker no longer held those events and is counted in
    ``missed``.
    """

    __slots__ = ("last_seq", "missed")

    def __init__(self, last_seq: int = 0) -> None:
        self.last_seq = last_seq
        self.missed = 0

    def accept(self, msg: pb.Event, put: Callable[[m.Event], object]) -> None:
        """``put`` each event of ``msg`` not seen yet (a ``HitRun`` holds several)."""
        seq, last = msg.seq, self.last_seq
        kind = msg.WhichOneof("kind")
        if kind == "hit_run":
            count = len(msg.hit_run.hit_counts)
            if seq + count - 1 <= last:
                return
            if seq > last + 1:
                self.missed += seq - last - 1
            self.last_seq = seq + count - 1
            for hit in hit_run_from_pb(msg, max(last + 1 - seq, 0)):
                put(hit)
            return
        if seq <= last:
            return
        if seq > last + 1:
            self.missed += seq - last - 1
        self.last_seq = seq
        event = event_from_pb(msg, kind)
        if event is not None:
            put(event)


# --- the steps -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReadStream:
    """Open ``StreamEvents`` for the events after ``after_seq`` and read it to its end."""

    after_seq: int


@dataclass(frozen=True, slots=True)
class Resume:
    """Call ``ResumeSession``, for at most ``timeout`` seconds."""

    timeout: float = RESUME_TIMEOUT


@dataclass(frozen=True, slots=True)
class Wait:
    """Pause before the next attempt (a close ends the pause)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Lose:
    """The session could not be resumed: tell the reader, the stream is over."""

    error: SessionLostError


Step = ReadStream | Resume | Wait | Lose


class StreamResume:
    """One session's stream: its event numbering and its reconnect decisions."""

    def __init__(
        self,
        name: str,
        lease_seconds: float,
        *,
        after_seq: int = 0,
        policy: ReconnectPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cursor = EventCursor(after_seq)
        #: How many times the stream was resumed after a break.
        self.reconnects = 0
        self._name = name
        self._lease = lease_seconds
        self._policy = policy or ReconnectPolicy()
        self._clock = clock
        self._delays: Iterator[float] | None = None
        self._deadline = 0.0
        self._started = 0.0

    def start(self) -> ReadStream:
        return self._read()

    def stream_ended(self, failure: HwbkptError | None) -> Wait | Lose:
        """The stream ended: with ``failure``, or cleanly (a broker before issue 12)."""
        if failure is not None and (
            failure.code in FATAL_CODES or failure.code in STREAM_END_CODES
        ):
            return self._lose(failure)
        now = self._clock()
        # A stream that stayed up for a while was healthy: a new break gets a new lease.
        if self._delays is None or now - self._started >= HEALTHY_STREAM:
            self._delays = self._policy.delays()
            self._deadline = now + self._lease + self._policy.grace
        elif now > self._deadline:
            return self._lose(
                failure or HwbkptError("UNAVAILABLE", "the event stream keeps ending")
            )
        return Wait(next(self._delays))

    def waited(self) -> Resume:
        return Resume()

    def resume_answered(self, failure: HwbkptError | None) -> ReadStream | Wait | Lose:
        """``ResumeSession`` succeeded (``None``) or failed with ``failure``."""
        if failure is None:
            self.reconnects += 1
            return self._read()
        if failure.code in FATAL_CODES or self._clock() > self._deadline:
            return self._lose(failure)
        assert self._delays is not None  # a resume only follows a stream that ended
        return Wait(next(self._delays))

    def _read(self) -> ReadStream:
        self._started = self._clock()
        return ReadStream(self.cursor.last_seq)

    def _lose(self, err: HwbkptError) -> Lose:
        message = f"session {self._name!r} could not be resumed: {err.message}"
        return Lose(SessionLostError(err.code, message, err.field_violations))
