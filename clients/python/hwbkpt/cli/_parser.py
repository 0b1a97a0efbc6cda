"""The ``hwbkpt`` argument parser. Global options come before the subcommand."""

from __future__ import annotations

import argparse

from hwbkpt._address import ENV_VAR, default_address
from hwbkpt.dap import add_dap_parser
from hwbkpt.models import PRIORITY_PRESETS

__all__ = ["build_parser", "parse_location", "parse_number", "parse_priority_arg"]

_WATCH_EPILOG = """\
ADDRESS is hex (0x...), decimal, or a location the broker resolves in the target's own
binaries: SYMBOL, SYMBOL+OFFSET, MODULE!SYMBOL, FILE:LINE (exec), &VAR, &VAR.member, &array[3]
(kernel: a /proc/kallsyms name). A named region's default length is its type's size.
The watch prints its state, then one line per event, until --count hits, --timeout seconds,
Ctrl-C or SIGTERM; then it removes the request and closes its session.
--count N is counted by the broker (stop_after): exactly N hits are printed, then "removed".
Hits still arriving after a timeout or a signal are not printed; stderr says how many.
With --halt each hit stops the thread; the watch prints the hit and then resumes the thread.
With --json every line has "event", "breakpoint" and "seq"; the first line is the state the
broker answered when the request was set (seq 0), later lines are every event received,
with the broker's numbers (the first repeats that state).
If the broker removes the request (stop_after, target gone, broker shutdown) the watch ends.
Exit status: 0 done; 130 ended by Ctrl-C (SIGINT), 143 by SIGTERM, after the same clean-up;
2 bad input (the broker's status and the field at fault on stderr); 1 broker unreachable or
session lost.
"""


_ATTACH_EPILOG = """\
Prints the process's thread ids, then its events (its exit) until Ctrl-C, SIGTERM or
--timeout; then closes the session, and the broker lets the process go unless another
session still watches it: slots cleared, threads running.
Exit status 0 after --timeout or the process's exit, 130 after Ctrl-C, 143 after SIGTERM.
"""

_LAUNCH_EPILOG = """\
The program starts under the broker, held before its first instruction; each --watch is set
(LOCATION is an address, hex or decimal, or a name as for watch: PIE programs are resolved
at the exec stop, where the load bias is known),
then the program runs. Prints the pid first, then the state of each watch and one line per
event until the program exits, --count hits, --timeout seconds or Ctrl-C. The program
inherits the broker's standard streams. If it still runs at the end, it is let go, not
killed. Exit status as for watch (130 after Ctrl-C, 143 after SIGTERM).
Example: hwbkpt launch --watch 0x404040 --count 10 -- ./prog arg
"""


def _launch_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "launch",
        help="start a program under the broker with watches set before it runs",
        epilog=_LAUNCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--watch",
        action="append",
        metavar="LOCATION",
        type=parse_location,
        help="an address to watch in the program (repeatable)",
    )
    p.add_argument(
        "--length", type=_count, default=None, help="bytes (default 8; exec: the arch's)"
    )
    p.add_argument(
        "--access", choices=("write", "read", "rw", "exec"), default="write", help="default write"
    )
    p.add_argument(
        "--priority",
        type=parse_priority_arg,
        default=None,
        metavar="N|" + "|".join(PRIORITY_PRESETS),
        help="0..100 or a preset (default normal)",
    )
    p.add_argument("--count", type=_count, default=0, help="stop after N hits")
    p.add_argument("--timeout", type=_seconds, default=0.0, help="stop after S seconds")
    p.add_argument("--name", default=None, help="session name (default hwbkpt-launch-<pid>)")
    p.add_argument(
        "--changed-only", action="store_true", help="report only hits that change the value"
    )
    p.add_argument("--nonstop", action="store_true", help="non-stop watches (no ptrace stops)")
    p.add_argument("--follow-fork", action="store_true", help="trace its forked children too")
    p.add_argument(
        "program", nargs=argparse.REMAINDER, metavar="-- PROGRAM ARGS", help="what to run"
    )


def parse_number(text: str) -> int:
    """Hex (``0x..``) or decimal; raises ValueError otherwise."""
    t = text.strip().lower().replace("_", "")
    if t.startswith(("0x", "-0x")):
        return int(t, 16)
    if t.lstrip("-").isdigit():
        return int(t, 10)
    raise ValueError(f"{text!r} is not a number")


def _number(text: str) -> int:
    try:
        return parse_number(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _count(text: str) -> int:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def parse_location(text: str) -> int | str:
    """A number, else the text itself as a symbol for the broker to resolve."""
    try:
        return parse_number(text)
    except ValueError:
        return text


def parse_priority_arg(text: str) -> int:
    """A preset name or an integer; the range (0..100) is the broker's to check."""
    if text.lower() in PRIORITY_PRESETS:
        return PRIORITY_PRESETS[text.lower()]
    try:
        return parse_number(text)
    except ValueError:
        names = "|".join(PRIORITY_PRESETS)
        raise argparse.ArgumentTypeError(f"{text!r}: expected N or {names}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hwbkpt",
        description="Command line of the hwbkpt hardware breakpoint broker.",
    )
    p.add_argument(
        "--server",
        metavar="ADDR",
        action="append",
        default=None,
        help=f"unix:PATH, tcp:HOST:PORT or HOST:PORT (default ${ENV_VAR}, "
        f"else {default_address()}); repeat it for slots, top and health to see several "
        "brokers at once",
    )
    p.add_argument("--ca", metavar="FILE", help="the broker's CA certificate (PEM): use TLS")
    p.add_argument("--cert", metavar="FILE", help="client certificate (PEM), with --key")
    p.add_argument("--key", metavar="FILE", help="the client certificate's key (PEM)")
    p.add_argument("--token-file", metavar="FILE", help="a bearer token to present")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("info", help="the machine, its slot pools and the mechanisms available")

    slots = sub.add_parser("slots", help="who holds which slot in each thread, and what waits")
    slots.add_argument("--pid", type=_count, default=0, help="only this process")
    slots.add_argument("--pool", default="", help="only this pool's slots (e.g. dr)")

    health = sub.add_parser(
        "health",
        help="ask each broker's gRPC health service; exit 0 when all are SERVING, else 1",
    )
    health.add_argument(
        "--service", default="", help="the service to ask about (default: the whole server)"
    )
    health.add_argument("--timeout", type=_seconds, default=3.0, help="seconds (default 3)")

    top = sub.add_parser(
        "top",
        help="a live view of the slots: holders, priorities, hit rates, what waits, "
        "displacements as they happen (q quits)",
    )
    top.add_argument("--pid", type=_count, default=0, help="only this process")
    top.add_argument(
        "--duration", type=_seconds, default=0.0, help="quit after S seconds (default: on q)"
    )

    w = sub.add_parser(
        "watch",
        help="set one request and print its events",
        epilog=_WATCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = w.add_mutually_exclusive_group(required=True)
    target.add_argument("--pid", type=_count, help="every thread of this process")
    target.add_argument("--tid", type=_count, help="this thread only")
    target.add_argument("--kernel", action="store_true", help="a kernel address, on every CPU")
    w.add_argument("address", metavar="ADDRESS", type=parse_location)
    w.add_argument(
        "--length", type=_count, default=None, help="bytes (default 8; exec: the arch's)"
    )
    w.add_argument(
        "--access", choices=("write", "read", "rw", "exec"), default="write", help="default write"
    )
    w.add_argument(
        "--priority",
        type=parse_priority_arg,
        default=None,
        metavar="N|" + "|".join(PRIORITY_PRESETS),
        help="0..100 or a preset (default normal)",
    )
    w.add_argument("--halt", action="store_true", help="stop the thread on each hit")
    w.add_argument("--count", type=_count, default=0, help="stop after N hits")
    w.add_argument("--timeout", type=_seconds, default=0.0, help="stop after S seconds")
    w.add_argument("--name", default=None, help="session name (default hwbkpt-watch-<pid>)")
    w.add_argument(
        "--changed-only", action="store_true", help="report only hits that change the value"
    )
    w.add_argument(
        "--nonstop",
        action="store_true",
        help="non-stop mode: perf samples, the target is never stopped (no ptrace)",
    )
    w.add_argument(
        "--call-chain",
        action="store_true",
        help="with --kernel: report the kernel call chain of each hit",
    )

    a = sub.add_parser(
        "attach",
        help="trace a running process until Ctrl-C or --timeout, then let it go",
        epilog=_ATTACH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("--pid", type=_count, required=True, help="the process to attach")
    a.add_argument("--timeout", type=_seconds, default=0.0, help="detach after S seconds")
    a.add_argument("--name", default=None, help="session name (default hwbkpt-attach-<pid>)")
    a.add_argument("--follow-fork", action="store_true", help="trace its forked children too")

    _launch_parser(sub)

    add_dap_parser(sub)

    sim = sub.add_parser("sim", help="drive the simulated machine")
    simsub = sim.add_subparsers(dest="sim_command", required=True, metavar="SIMCOMMAND")
    spawn = simsub.add_parser("spawn", help="create a process; prints its pid")
    spawn.add_argument("--threads", type=_count, default=1)
    touch = simsub.add_parser("touch", help="one access by a thread; prints the requests hit")
    touch.add_argument("--pid", type=_count, required=True)
    touch.add_argument("--tid", type=_count, default=0, help="default: the first live thread")
    touch.add_argument("address", metavar="ADDRESS", type=_number)
    touch.add_argument("--access", choices=("write", "read", "exec"), default="write")
    touch.add_argument(
        "--value", type=_number, default=None, help="the value written (little-endian)"
    )
    touch.add_argument("--size", type=_count, default=0, help="access size (default 8 or 1)")
    return p
