"""``hwbkpt watch``: one request, its events, then clean up."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections import deque
from typing import Unpack

from hwbkpt import models as m
from hwbkpt._args import WatchArgs
from hwbkpt.cli._follow import (
    Ended,
    StopFlag,
    Until,
    exit_status,
    follow,
    initial_state,
    next_event,
    print_event,
    print_resolution,
    stop_on_signals,
)
from hwbkpt.cli._output import Printer
from hwbkpt.cli._progress import ProgressDisplay, call_with_progress
from hwbkpt.client import Client, Session
from hwbkpt.errors import HwbkptError

__all__ = ["cmd_watch", "watch_args"]

#: How long to wait for the broker's "removed" event after removing the request.
_REMOVED_WAIT = 1.0


def watch_args(args: argparse.Namespace, **target: Unpack[WatchArgs]) -> WatchArgs:
    """The request options ``watch`` and ``launch`` both take, with ``target``'s added."""
    return WatchArgs(
        length=args.length,
        access=m.Access(args.access),
        priority=args.priority,
        changed_only=args.changed_only,
        nonstop=args.nonstop,
        **target,
    )


def cmd_watch(client: Client, args: argparse.Namespace, out: Printer) -> int:
    name = args.name if args.name is not None else f"hwbkpt-watch-{os.getpid()}"
    # The broker counts (stop_after): hits already in flight when the client would have
    # counted to N are never reported, so exactly N are printed whatever the hit rate.
    request = watch_args(
        args,
        pid=args.pid or 0,
        tid=args.tid or 0,
        kernel=args.kernel,
        halt=args.halt,
        call_chain=args.call_chain,
        stop_after=args.count,
    )
    stop = StopFlag(client)
    progress = ProgressDisplay()
    with stop_on_signals(stop):
        session = client.open_session(name)
        try:
            # A watch may attach a process of many threads or read a large binary first:
            # a bar on stderr meanwhile (issue 14).
            bp, backlog = call_with_progress(
                session, lambda: session.watch(args.address, **request), progress
            )
        except BaseException:
            progress.close()
            with contextlib.suppress(HwbkptError):
                session.close()
            raise
        removed = False
        try:
            # Every event received is printed: the stream's first state repeats the
            # reply's (seq 0), and hiding it would leave a hole in the numbers.
            print_resolution(out, bp)
            print_event(out, initial_state(bp))
            until = Until(timeout=args.timeout, count=args.count, removal_of=bp.id)
            ended = follow(session, out, stop, until, backlog=backlog, progress=progress)
            removed = ended is Ended.REMOVED
        finally:
            progress.close()
            _finish(session, bp, out, stop, removed=removed, backlog=backlog)
    return exit_status(stop)


def _finish(
    session: Session,
    bp: m.Breakpoint,
    out: Printer,
    stop: StopFlag,
    *,
    removed: bool,
    backlog: deque[m.Event] | None = None,
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
            _await_removed(session, bp, out, backlog)
    finally:
        with contextlib.suppress(HwbkptError):
            session.close()


def _await_removed(
    session: Session, bp: m.Breakpoint, out: Printer, backlog: deque[m.Event] | None
) -> None:
    """Print what comes until the broker's ``removed``, except hits: the watch is over
    (count reached, timeout, signal), and at a high hit rate printing the backlog would
    keep a stopped watch running. Their number goes to stderr."""
    skipped = 0
    deadline = time.monotonic() + _REMOVED_WAIT
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                ev = next_event(session, backlog, remaining)
            except HwbkptError:
                return
            if ev is None:
                return
            if isinstance(ev.payload, m.Hit):
                skipped += 1
                continue
            if isinstance(ev.payload, m.Progress) and not out.as_json:
                continue  # stderr's, as in follow
            print_event(out, ev)
            if isinstance(ev.payload, m.Removed) and ev.breakpoint_id == bp.id:
                return
    finally:
        if skipped:
            print(
                f"hwbkpt: {skipped} hit(s) received after the watch ended were not printed",
                file=sys.stderr,
            )
