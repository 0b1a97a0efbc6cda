"""A library client in its own process: one session with several watches.

``python -m demo.agent --server ADDR --name ide --pid PID ADDRESS...`` prints one JSON
line per watch set (``{"set": ...}``), then every event in the format of
``hwbkpt --json watch``; it closes its session and exits 0 on SIGTERM, SIGINT or when its
standard input closes.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

import hwbkpt
from hwbkpt.cli import event_record

__all__ = ["main"]


def _emit(record: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo.agent")
    p.add_argument("--server", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--priority", default="normal")
    p.add_argument("addresses", nargs="+", type=lambda s: int(s, 0))
    args = p.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def wait_for_stdin_eof() -> None:
        # Closing our stdin is the parent's other way to say "done".
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_stdin_eof, daemon=True).start()

    with hwbkpt.Client(args.server) as client, client.open_session(args.name) as session:
        for address in args.addresses:
            bp = session.watch(address, pid=args.pid, priority=args.priority)
            _emit({"set": bp.id, "address": address, "state": bp.state.value})
        while not stop.is_set():
            event = session.next_event(0.1)
            if event is not None:
                _emit(event_record(event))
    return 0


if __name__ == "__main__":
    sys.exit(main())
