"""``hwbkpt attach`` and ``hwbkpt launch``: processes under the broker (native machine)."""

from __future__ import annotations

import argparse
import contextlib
import os

from hwbkpt.cli._follow import (
    Ended,
    StopFlag,
    Until,
    exit_status,
    follow,
    initial_state,
    print_event,
    print_resolution,
    stop_on_signals,
)
from hwbkpt.cli._output import Printer
from hwbkpt.cli._progress import ProgressDisplay, call_with_progress
from hwbkpt.cli._watch import watch_args
from hwbkpt.client import Client
from hwbkpt.errors import HwbkptError

__all__ = ["cmd_attach", "cmd_launch", "program_argv"]


def cmd_attach(client: Client, args: argparse.Namespace, out: Printer) -> int:
    name = args.name if args.name is not None else f"hwbkpt-attach-{os.getpid()}"
    stop = StopFlag(client)
    progress = ProgressDisplay()
    with stop_on_signals(stop):
        session = client.open_session(name)
        try:
            # Thousands of threads take a while: a bar on stderr meanwhile (issue 14).
            tids, backlog = call_with_progress(
                session,
                lambda: session.attach_process(args.pid, follow_fork=args.follow_fork),
                progress,
            )
            out.emit(
                {"event": "attached", "pid": args.pid, "tids": list(tids)},
                f"attached pid {args.pid}: threads {', '.join(map(str, tids))}",
            )
            until = Until(timeout=args.timeout, exit_of=args.pid)
            ended = follow(session, out, stop, until, backlog=backlog, progress=progress)
            if ended is Ended.EXITED:
                return 0
        finally:
            progress.close()
            with contextlib.suppress(HwbkptError):
                session.close()
    # Closing the session is what lets the process go (unless another session needs it).
    out.emit({"event": "detached", "pid": args.pid}, f"detached pid {args.pid}")
    return exit_status(stop)


def program_argv(args: argparse.Namespace) -> list[str]:
    argv = list(args.program)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise ValueError("launch: give the program to run after --")
    return argv


def cmd_launch(client: Client, args: argparse.Namespace, out: Printer) -> int:
    argv = program_argv(args)
    name = args.name if args.name is not None else f"hwbkpt-launch-{os.getpid()}"
    stop = StopFlag(client)
    progress = ProgressDisplay()
    with stop_on_signals(stop):
        session = client.open_session(name)
        try:
            pid = session.launch_process(argv, follow_fork=args.follow_fork)
            out.emit(
                {"event": "launched", "pid": pid, "argv": argv},
                f"launched pid {pid}: {' '.join(argv)}",
            )
            request = watch_args(args, pid=pid)
            # Watches by name read the program's binaries: a bar while a large one is read.
            bps, backlog = call_with_progress(
                session,
                lambda: [session.watch(location, **request) for location in args.watch or ()],
                progress,
            )
            for bp in bps:
                print_resolution(out, bp)
                print_event(out, initial_state(bp))
            session.release_process(pid)
            # --count is counted here, over all the watches: each is one request.
            until = Until(timeout=args.timeout, count=args.count, exit_of=pid)
            follow(session, out, stop, until, backlog=backlog, progress=progress)
        finally:
            progress.close()
            # Its watches go with the session; a program released and still running is let
            # go, not killed; one never released (something failed first) the broker kills.
            with contextlib.suppress(HwbkptError):
                session.close()
    return exit_status(stop)
