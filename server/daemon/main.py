"""``hwbkptd``: the broker daemon's command line."""

from __future__ import annotations

import os

# The ptrace mechanism forks to launch programs, from its own thread while gRPC runs.
# gRPC's fork handlers (on by default in grpcio's core) then break its event engine in the
# parent ("Check failed: wakeup_fd_->Wakeup().ok()", SIGABRT); the child execs at once and
# needs none of them. gRPC reads this when it is first imported, so it is set before that.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import argparse
import asyncio
import gc
import sys
from collections.abc import Sequence

from hwbkptd.api.listeners import DEFAULT_LISTEN, ConfigError
from hwbkptd.api.server import ServerConfig, serve
from hwbkptd.core.policy import describe_rights
from hwbkptd.daemon import logging as hwlog
from hwbkptd.daemon.access import AccessFiles, check_policy_file
from hwbkptd.daemon.config_file import ConfigFileError, render_settings, resolve_settings
from hwbkptd.daemon.limit_flags import add_limit_flags, limits_from_args
from hwbkptd.daemon.machines import ARMINGS, MachineError, build_machine

__all__ = [
    "GC_THRESHOLD0",
    "build_parser",
    "check_policy",
    "config_from_args",
    "main",
    "tune_gc",
]


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number of at least 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hwbkptd",
        description="hwbkpt broker: shares the hardware debug registers between debugging clients.",
    )
    p.add_argument(
        "--listen",
        action="append",
        metavar="ADDR",
        help=f"unix:PATH or tcp:HOST:PORT (repeatable; default {DEFAULT_LISTEN}); "
        "TCP only on loopback with --insecure-loopback-tcp; port 0 picks a free port",
    )
    p.add_argument(
        "--machine",
        default="auto",
        help="auto (native when available, else sim), native, sim, sim:arm64, "
        "sim:dr=N or sim:exec=N,data=M (default: auto)",
    )
    p.add_argument("--arming", choices=ARMINGS, default="auto", help="how native slots are armed")
    p.add_argument(
        "--notify",
        choices=("auto", "bpf", "ptrace", "sample"),
        default="auto",
        help="what serves NOTIFY requests on the native machine: bpf (exact values, no stop; "
        "needs CAP_BPF and CAP_PERFMON), ptrace (the thread stops per hit), sample (perf, "
        "values read late), auto (bpf where a probe program loads and attaches at start, "
        "else ptrace); HALT requests always use ptrace; default auto",
    )
    p.add_argument(
        "--log-format",
        choices=("json", "console"),
        default=None,
        help="default: console on a terminal, json otherwise",
    )
    p.add_argument("--log-level", choices=hwlog.LEVELS, default="info")
    p.add_argument(
        "--lease",
        type=_positive,
        default=15.0,
        metavar="SECONDS",
        help="how long a session outlives its dropped event stream (default 15)",
    )
    p.add_argument(
        "--hit-buffer",
        type=_count,
        default=4096,
        metavar="N",
        help="hit events buffered per session before hits are dropped (default 4096)",
    )
    p.add_argument(
        "--halt-timeout",
        type=_positive,
        default=30.0,
        metavar="S",
        help="seconds a HALT hit keeps its thread stopped without a resume (default 30)",
    )
    p.add_argument(
        "--group",
        default=None,
        metavar="NAME",
        help="operators' group that may use the Unix socket (default: root's group)",
    )
    p.add_argument(
        "--insecure-loopback-tcp",
        action="store_true",
        help="allow plain TCP listeners on loopback addresses (no authentication)",
    )
    p.add_argument(
        "--no-hit-words",
        action="store_true",
        help="report user hits without function, line and symbol names (to measure their cost)",
    )
    p.add_argument(
        "--metrics",
        metavar="tcp:HOST:PORT",
        default=None,
        help="serve Prometheus metrics over HTTP here (GET /metrics; port 0 picks a free "
        "port, logged at start)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="read settings from this TOML file: each key is a flag's long name "
        "(hit-buffer = 8192); flags on the command line win",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective settings and where each came from, then exit",
    )
    p.add_argument(
        "--policy",
        metavar="FILE",
        help="TOML policy: what each identity may do (needed for TLS listeners and tokens; "
        "reloaded on SIGHUP)",
    )
    p.add_argument(
        "--check-policy",
        metavar="FILE",
        help="validate a policy file, print what it allows and exit (0: valid, 2: not)",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="bearer tokens: lines 'NAME SHA256-HEX' of each token (reloaded on SIGHUP)",
    )
    p.add_argument("--tls-cert", metavar="FILE", help="server certificate (PEM): TCP uses TLS")
    p.add_argument("--tls-key", metavar="FILE", help="the server certificate's key (PEM)")
    p.add_argument(
        "--client-ca",
        metavar="FILE",
        help="CA of client certificates (PEM): every TLS client must present one it signed",
    )
    p.add_argument(
        "--ready-file",
        metavar="PATH",
        help="write the bound addresses here, one per line, once serving",
    )
    add_limit_flags(p)
    return p


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        listen=tuple(args.listen or (DEFAULT_LISTEN,)),
        machine=args.machine,
        arming=args.arming,
        lease_seconds=args.lease,
        hit_buffer=args.hit_buffer,
        halt_timeout_seconds=args.halt_timeout,
        group=args.group,
        insecure_loopback_tcp=args.insecure_loopback_tcp,
        ready_file=args.ready_file,
        hit_words=not args.no_hit_words,
        metrics=args.metrics,
        limits=limits_from_args(args),
        access=AccessFiles(
            policy=args.policy,
            tokens=args.token_file,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            client_ca=args.client_ca,
        ),
    )


def check_policy(path: str) -> int:
    """``--check-policy``: one line per identity, or the reason the file is refused."""
    try:
        found = check_policy_file(path)
    except ConfigError as err:
        print(f"hwbkptd: error: {err}", file=sys.stderr)
        return 2
    print(f"{path}: valid, {len(found.identities)} identities")
    for name, who in sorted(found.identities.items()):
        print(f"  {name}: {describe_rights(who)}")
    if found.unauthenticated_methods:
        print(f"  without credentials: {', '.join(sorted(found.unauthenticated_methods))}")
    return 0


#: Allocations between young-generation collections (CPython's default is 700).
GC_THRESHOLD0 = 10_000


def tune_gc() -> None:
    """Collect cyclic garbage less often: every hit allocates a few objects (a report, a
    hit, an event, a message) that reference counting frees, and at tens of thousands of
    hits a second the default threshold ran a collection every few milliseconds, about a
    third of the hit path's time on a simulated broker. What exists at start-up (modules,
    the machine) is frozen out of the collector's walks."""
    gc.collect()  # start-up garbage goes now, not with the first hits
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD0, older, oldest)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = resolve_settings(build_parser, argv, build_parser().parse_args(argv))
    except ConfigFileError as err:
        print(f"hwbkptd: error: --config {err}", file=sys.stderr)
        return 2
    args = settings.values
    if args.listen is None:
        args.listen = [DEFAULT_LISTEN]
    if args.print_config:
        print("\n".join(render_settings(settings)))
        return 0
    if args.check_policy:
        return check_policy(args.check_policy)
    hwlog.configure(args.log_format, args.log_level)
    try:
        # Before any thread exists: the ptrace mechanism blocks SIGCHLD in this thread and
        # every thread started later (gRPC's, the tracer) inherits the mask.
        machine = build_machine(args.machine, args.arming, args.notify)
    except MachineError as err:
        print(f"hwbkptd: error: {err}", file=sys.stderr)
        return 2
    tune_gc()
    try:
        asyncio.run(serve(config_from_args(args), machine))
    except ConfigError as err:
        print(f"hwbkptd: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # A second Ctrl-C during shutdown: the first one already asked for a clean stop.
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
