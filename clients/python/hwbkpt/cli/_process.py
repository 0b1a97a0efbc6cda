"""``hwbkpt attach`` and ``hwbkpt launch``: processes under the broker (native machine)."""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
import time
from typing import Any

from hwbkpt import models as m
from hwbkpt.cli._output import Printer
from hwbkpt.cli._watch import POLL, initial_state, print_event, state_key, stop_on_signals
from hwbkpt.client import Client, Session
from hwbkpt.errors import HwbkptError

__all__ = ["cmd_attach", "cmd_launch", "program_argv"]


def _deadline(timeout: float) -> float | None:
    return time.monotonic() + timeout if timeout else None


def _remaining(deadline: float | None) -> float:
    if deadline is None:
        return POLL
    return min(POLL, deadline - time.monotonic())


def _exited(ev: m.Event, pid: int) -> bool:
    p = ev.payload
    return isinstance(p, m.TargetExited) and p.pid == pid and p.tid == 0


def cmd_attach(client: Client, args: argparse.Namespace, out: Printer) -> int:
    name = args.name if args.name is not None else f"hwbkpt-attach-{os.getpid()}"
    stop = threading.Event()
    with stop_on_signals(stop):
        session = client.open_session(name)
        try:
            tids = session.attach_process(args.pid, follow_fork=args.follow_fork)
            out.emit(
                {"event": "attached", "pid": args.pid, "tids": list(tids)},
                f"attached pid {args.pid}: threads {', '.join(map(str, tids))}",
            )
            deadline = _deadline(args.timeout)
            while not stop.is_set() and (wait := _remaining(deadline)) > 0:
                ev = session.next_event(wait)
                if ev is None:
                    if session.ended:
                        break
                    continue
                print_event(out, ev)
                if _exited(ev, args.pid):
                    return 0
        finally:
            with contextlib.suppress(HwbkptError):
                session.close()
    # Closing the session is what lets the process go (unless another session needs it).
    out.emit({"event": "detached", "pid": args.pid}, f"detached pid {args.pid}")
    return 0


def program_argv(args: argparse.Namespace) -> list[str]:
    argv = list(args.program)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise ValueError("launch: give the program to run after --")
    return argv


def _set_watches(session: Session, pid: int, args: argparse.Namespace) -> list[m.Breakpoint]:
    return [
        session.watch(
            location,
            pid=pid,
            length=args.length,
            access=m.Access(args.access),
            priority=args.priority,
            changed_only=args.changed_only,
            nonstop=args.nonstop,
        )
        for location in args.watch or ()
    ]


def cmd_launch(client: Client, args: argparse.Namespace, out: Printer) -> int:
    argv = program_argv(args)
    name = args.name if args.name is not None else f"hwbkpt-launch-{os.getpid()}"
    stop = threading.Event()
    with stop_on_signals(stop):
        session = client.open_session(name)
        try:
            pid = session.launch_process(argv, follow_fork=args.follow_fork)
            out.emit(
                {"event": "launched", "pid": pid, "argv": argv},
                f"launched pid {pid}: {' '.join(argv)}",
            )
            bps = _set_watches(session, pid, args)
            for bp in bps:
                print_event(out, initial_state(bp))
            session.release_process(pid)
            _follow(session, pid, bps, args, out, stop)
        finally:
            # Its watches go with the session; a program released and still running is let
            # go, not killed; one never released (something failed first) the broker kills.
            with contextlib.suppress(HwbkptError):
                session.close()
    return 0


def _follow(
    session: Session,
    pid: int,
    bps: list[m.Breakpoint],
    args: argparse.Namespace,
    out: Printer,
    stop: threading.Event,
) -> None:
    """Print events until the program exits, --count hits, --timeout or Ctrl-C."""
    last: dict[int, tuple[Any, ...]] = {bp.id: state_key(bp) for bp in bps}
    deadline = _deadline(args.timeout)
    hits = 0
    while not stop.is_set() and not (args.count and hits >= args.count):
        wait = _remaining(deadline)
        if wait <= 0:
            return
        ev = session.next_event(wait)
        if ev is None:
            if session.ended:
                return
            continue
        p = ev.payload
        if isinstance(p, m.StateChanged) and ev.breakpoint_id in last:
            # The stream repeats the state the SetBreakpoint reply already showed.
            if state_key(p) == last[ev.breakpoint_id]:
                continue
            last[ev.breakpoint_id] = state_key(p)
        print_event(out, ev)
        if isinstance(p, m.Hit):
            hits += 1
        if _exited(ev, pid):
            return
