"""``hwbkpt watch``: one request, its events, then clean up."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import FrameType

from hwbkpt import models as m
from hwbkpt.cli._output import Printer, event_line, event_record
from hwbkpt.client import Client, Session
from hwbkpt.errors import HwbkptError

__all__ = ["POLL", "cmd_watch", "initial_state", "print_event", "state_key", "stop_on_signals"]

#: How often the loop looks at the clock and the stop flag while no event arrives.
POLL = 0.2
#: How long to wait for the broker's "removed" event after removing the request.
_REMOVED_WAIT = 1.0


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM end the watch cleanly instead of killing it mid-call."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def state_key(ev_or_bp: m.StateChanged | m.Breakpoint) -> tuple[object, ...]:
    reason = ev_or_bp.pending_reason
    return (ev_or_bp.state, reason, ev_or_bp.installed_tids, ev_or_bp.pending_tids)


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
    stop = threading.Event()
    with stop_on_signals(stop):
        session = client.open_session(name)
        try:
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
            )
        except BaseException:
            with contextlib.suppress(HwbkptError):
                session.close()
            raise
        removed = False
        try:
            removed = _follow(session, bp, args, out, stop)
        finally:
            _finish(session, bp, out, removed=removed)
    return 0


def print_event(out: Printer, ev: m.Event) -> None:
    out.emit(event_record(ev), event_line(ev))


def _follow(
    session: Session,
    bp: m.Breakpoint,
    args: argparse.Namespace,
    out: Printer,
    stop: threading.Event,
) -> bool:
    """Print events until done; True when the broker itself removed the request."""
    print_event(out, initial_state(bp))
    last_state = state_key(bp)
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
        p = ev.payload
        if isinstance(p, m.StateChanged):
            # The stream repeats the state the SetBreakpoint reply already showed.
            if ev.breakpoint_id == bp.id and state_key(p) == last_state:
                continue
            if ev.breakpoint_id == bp.id:
                last_state = state_key(p)
        print_event(out, ev)
        if isinstance(p, m.Hit) and ev.breakpoint_id == bp.id:
            hits += 1
            if p.halted:
                session.resume_threads([p.tid])
        if isinstance(p, m.Removed) and ev.breakpoint_id == bp.id:
            return True  # stop_after, target exit or broker shutdown: nothing left to watch
    return False


def _finish(session: Session, bp: m.Breakpoint, out: Printer, *, removed: bool) -> None:
    """Remove the request, show the broker's confirmation, close the session."""
    try:
        if not removed and not session.ended:
            try:
                session.remove(bp.id)
            except HwbkptError as err:
                if err.code != "NOT_FOUND":  # already gone (e.g. stop_after): fine
                    raise
            else:
                _await_removed(session, bp, out)
    finally:
        with contextlib.suppress(HwbkptError):
            session.close()


def _await_removed(session: Session, bp: m.Breakpoint, out: Printer) -> None:
    deadline = time.monotonic() + _REMOVED_WAIT
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            ev = session.next_event(remaining)
        except HwbkptError:
            return
        if ev is None:
            return
        if isinstance(ev.payload, m.StateChanged) and ev.breakpoint_id == bp.id:
            continue  # the final "removed" state repeats the removed event
        print_event(out, ev)
        if isinstance(ev.payload, m.Removed) and ev.breakpoint_id == bp.id:
            return
