"""What ``watch``, ``launch`` and ``attach`` share: following a session's events until the
command is done, and ending cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import enum
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

from hwbkpt import models as m
from hwbkpt.cli._output import Printer, event_line, event_record
from hwbkpt.cli._progress import ProgressDisplay
from hwbkpt.client import Client, Session
from hwbkpt.errors import HwbkptError

__all__ = [
    "POLL",
    "SIGNAL_CALL_TIMEOUT",
    "Ended",
    "StopFlag",
    "Until",
    "exit_status",
    "follow",
    "initial_state",
    "next_event",
    "print_event",
    "print_resolution",
    "stop_on_signals",
]

#: How often the loop looks at the clock and the stop flag while no event arrives.
POLL = 0.2
#: Each broker call's deadline once a signal came: a broker swamped by hits may take its
#: full call timeout (30 s) per call, and the user asked to stop now. What is not confirmed
#: by then the broker removes itself when the session's lease ends.
SIGNAL_CALL_TIMEOUT = 0.5


class StopFlag(threading.Event):
    """Set by SIGINT or SIGTERM; remembers the first of them for the exit status, and
    shortens the deadline of the client's clean-up calls."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.signum = 0
        self._client = client

    def signalled(self, signum: int) -> None:
        if not self.signum:
            self.signum = signum
            self._client.timeout = min(self._client.timeout, SIGNAL_CALL_TIMEOUT)
        self.set()


def exit_status(stop: StopFlag) -> int:
    """0, or 128 + the signal that ended the command (130 Ctrl-C, 143 SIGTERM), as a shell
    reports a command killed by it: a script can tell an interrupted run from a finished one."""
    return 128 + stop.signum if stop.signum else 0


@contextlib.contextmanager
def stop_on_signals(stop: StopFlag) -> Iterator[None]:
    """Ctrl-C and SIGTERM end the command cleanly instead of killing it mid-call."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.signalled(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def initial_state(bp: m.Breakpoint) -> m.Event:
    """The state SetBreakpoint returned, as an event numbered 0 (not from the stream)."""
    return m.Event(
        seq=0,
        time=datetime.now(UTC),
        breakpoint_id=bp.id,
        payload=m.StateChanged(bp.state, bp.pending_reason, bp.installed_tids, bp.pending_tids),
    )


def print_event(out: Printer, ev: m.Event) -> None:
    out.emit(event_record(ev), event_line(ev))


def print_resolution(out: Printer, bp: m.Breakpoint) -> None:
    """What a location resolved to, in text mode only (JSON readers have ``list``)."""
    r = bp.resolution
    if r is None or out.as_json:
        return
    facts = [f"{bp.spec.length} bytes" if bp.spec.length else "exec"]
    facts += [x for x in (r.type_name, r.source, r.module) if x]
    out.emit(
        {}, f"bp {bp.id}: {r.location} is {r.symbol or '?'} at {r.address:#x} ({', '.join(facts)})"
    )


@dataclass(frozen=True, slots=True)
class Until:
    """When a command stops following (besides a signal and the end of the stream). No
    request and no process is numbered 0."""

    #: Seconds from the start of following (0: no limit).
    timeout: float = 0.0
    #: Hits (0: no limit).
    count: int = 0
    #: The process whose exit ends it (0: none).
    exit_of: int = 0
    #: The request whose removal by the broker ends it (0: none).
    removal_of: int = 0


class Ended(enum.Enum):
    SIGNAL = "signal"
    TIMEOUT = "timeout"
    COUNT = "count"
    EXITED = "exited"
    REMOVED = "removed"
    STREAM_ENDED = "stream ended"


def follow(
    session: Session,
    out: Printer,
    stop: StopFlag,
    until: Until,
    *,
    backlog: deque[m.Event] | None = None,
    progress: ProgressDisplay | None = None,
) -> Ended:
    """Print every event received (``backlog`` first: what came while a call ran; what
    is left of it stays there) until ``until`` is met, and resume each thread a hit halted
    once it is printed; why it ended. Progress events go to ``progress`` (stderr); stdout
    gets them in JSON only."""
    deadline = time.monotonic() + until.timeout if until.timeout else None
    hits = 0
    while not stop.is_set():
        if until.count and hits >= until.count:
            return Ended.COUNT
        wait = POLL
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Ended.TIMEOUT
            wait = min(wait, remaining)
        ev = next_event(session, backlog, wait)
        if ev is None:
            if session.ended:
                return Ended.STREAM_ENDED
            continue
        p = ev.payload
        if isinstance(p, m.Progress):
            if progress is not None:
                progress.show_event(ev)
            if out.as_json:
                print_event(out, ev)
            continue
        print_event(out, ev)
        if isinstance(p, m.Hit):
            hits += 1
            if p.halted:
                _resume(session, p.tid)
        elif isinstance(p, m.Removed) and ev.breakpoint_id == until.removal_of:
            return Ended.REMOVED  # stop_after, target exit or broker shutdown
        elif isinstance(p, m.TargetExited) and (p.pid, p.tid) == (until.exit_of, 0):
            return Ended.EXITED  # the process, not one of its threads
    return Ended.SIGNAL


def next_event(session: Session, backlog: deque[m.Event] | None, wait: float) -> m.Event | None:
    """The oldest event of ``backlog``, else the session's next one (None after ``wait``)."""
    return backlog.popleft() if backlog else session.next_event(wait)


def _resume(session: Session, tid: int) -> None:
    try:
        session.resume_threads([tid])
    except HwbkptError as err:
        # The broker let the thread go first: the request ended (stop_after lets go of a
        # process no one else watches) or its halt timed out. It runs either way.
        if err.code != "FAILED_PRECONDITION":
            raise
