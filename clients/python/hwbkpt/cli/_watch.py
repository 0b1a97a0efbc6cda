"""``hwbkpt watch``: one request, its events, then clean up."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import FrameType

from hwbkpt import models as m
from hwbkpt.cli._output import Printer, event_line, event_record
from hwbkpt.client import Client, Session
from hwbkpt.errors import HwbkptError

__all__ = [
    "POLL",
    "StopFlag",
    "cmd_watch",
    "exit_status",
    "initial_state",
    "print_event",
    "stop_on_signals",
]

#: How often the loop looks at the clock and the stop flag while no event arrives.
POLL = 0.2
#: How long to wait for the broker's "removed" event after removing the request.
_REMOVED_WAIT = 1.0
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


def cmd_watch(client: Client, args: argparse.Namespace, out: Printer) -> int:
    name = args.name if args.name is not None else f"hwbkpt-watch-{os.getpid()}"
    access = m.Access(args.access)
    stop = StopFlag(client)
    with stop_on_signals(stop):
        session = client.open_session(name)
        try:
            # The broker counts: hits already in flight when the client would have counted
            # to N are never reported, so exactly N are printed whatever the hit rate.
            bp = session.watch(
                args.address,
                pid=args.pid or 0,
                tid=args.tid or 0,
                kernel=args.kernel,
                length=args.length,
                access=access,
                priority=args.priority,
                halt=args.halt,
                changed_only=args.changed_only,
                nonstop=args.nonstop,
                call_chain=args.call_chain,
                stop_after=args.count,
            )
        except BaseException:
            with contextlib.suppress(HwbkptError):
                session.close()
            raise
        removed = False
        try:
            removed = _follow(session, bp, args, out, stop)
        finally:
            _finish(session, bp, out, stop, removed=removed)
    return exit_status(stop)


def print_event(out: Printer, ev: m.Event) -> None:
    out.emit(event_record(ev), event_line(ev))


def _follow(
    session: Session,
    bp: m.Breakpoint,
    args: argparse.Namespace,
    out: Printer,
    stop: StopFlag,
) -> bool:
    """Print events until done; True when the broker itself removed the request.

    Every event received is printed: the stream's first state repeats the reply's (seq 0),
    and hiding it would leave a hole in the numbers.
    """
    print_event(out, initial_state(bp))
    deadline = time.monotonic() + args.timeout if args.timeout else None
    hits = 0
    while not stop.is_set() and not (args.count and hits >= args.count):
        wait = POLL
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            wait = min(wait, remaining)
        ev = session.next_event(wait)
        if ev is None:
            if session.ended:
                return False
            continue
        print_event(out, ev)
        p = ev.payload
        if isinstance(p, m.Hit) and ev.breakpoint_id == bp.id:
            hits += 1
            if p.halted:
                _resume(session, p.tid)
        if isinstance(p, m.Removed) and ev.breakpoint_id == bp.id:
            return True  # stop_after, target exit or broker shutdown: nothing left to watch
    return False


def _resume(session: Session, tid: int) -> None:
    try:
        session.resume_threads([tid])
    except HwbkptError as err:
        # The broker let the thread go first: the request ended (stop_after lets go of a
        # process no one else watches) or its halt timed out. It runs either way.
        if err.code != "FAILED_PRECONDITION":
            raise


def _finish(
    session: Session, bp: m.Breakpoint, out: Printer, stop: StopFlag, *, removed: bool
) -> None:
    """Remove the request, show the broker's confirmation, close the session."""
    try:
        if not removed and not session.ended:
            try:
                session.remove(bp.id)
            except HwbkptError as err:
                if err.code == "NOT_FOUND":
                    pass  # already gone (stop_after): its "removed" is on the way
                elif stop.signum:
                    print(
                        f"hwbkpt: the broker did not confirm the removal ({err.code}); "
                        "it removes the request when the session's lease ends",
                        file=sys.stderr,
                    )
                    return
                else:
                    raise
            _await_removed(session, bp, out)
    finally:
        with contextlib.suppress(HwbkptError):
            session.close()


def _await_removed(session: Session, bp: m.Breakpoint, out: Printer) -> None:
    """Print what comes until the broker's ``removed``, except hits: the watch is over
    (count reached, timeout, signal), and at a high hit rate printing the backlog would
    keep a stopped watch running. Their number goes to stderr."""
    skipped = 0
    deadline = time.monotonic() + _REMOVED_WAIT
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                ev = session.next_event(remaining)
            except HwbkptError:
                return
            if ev is None:
                return
            if isinstance(ev.payload, m.Hit):
                skipped += 1
                continue
            print_event(out, ev)
            if isinstance(ev.payload, m.Removed) and ev.breakpoint_id == bp.id:
                return
    finally:
        if skipped:
            print(
                f"hwbkpt: {skipped} hit(s) received after the watch ended were not printed",
                file=sys.stderr,
            )
