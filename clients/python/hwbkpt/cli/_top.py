"""``hwbkpt top``: the live view of one broker or several, refreshed by their WatchSlotMap
streams (the brokers push an update after each change; nothing is polled). ``q`` quits.

One reader thread per broker puts its updates on a queue; the main thread draws them with
rich and reads the keyboard (cbreak mode when stdin is a terminal). The screen is also
redrawn once a second without an update so hit rates decay when the hits stop.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import select
import sys
import termios
import threading
import time
import tty
from collections.abc import Iterator, Sequence

from rich.console import Console
from rich.live import Live

from hwbkpt import models as m
from hwbkpt.cli._output import Printer
from hwbkpt.cli._top_view import TopView
from hwbkpt.client import Client
from hwbkpt.errors import HwbkptError

__all__ = ["cmd_top"]

#: How long the main thread waits for a key or an update before redrawing the rates.
_TICK = 1.0

_Item = tuple[str, m.SlotMapUpdate | str]


def _read(client: Client, pid: int, out: queue.SimpleQueue[_Item], wake: int) -> None:
    """Queue each update of one broker's watch, then what ended it; write a byte to
    ``wake`` after each, so the main thread waits in one select() for keys and updates."""

    def put(item: m.SlotMapUpdate | str) -> None:
        out.put((client.address, item))
        with contextlib.suppress(OSError):
            os.write(wake, b".")

    try:
        for update in client.watch_slot_map(pid):
            put(update)
        put("broker stopped")
    except HwbkptError as err:
        put(f"{err.code}: {err.message}")
    except ValueError as err:  # the channel closed while the iterator ran (quitting)
        put(str(err))


@contextlib.contextmanager
def _keys() -> Iterator[bool]:
    """Single keys from stdin, without echo, while it is a terminal; yields whether it is."""
    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    if fd < 0 or not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def cmd_top(clients: Sequence[Client], args: argparse.Namespace, out: Printer) -> int:
    servers = [c.address for c in clients]
    view = TopView(servers)
    updates: queue.SimpleQueue[_Item] = queue.SimpleQueue()
    wake, woken = os.pipe()
    os.set_blocking(woken, False)  # a full pipe already says "look at the queue"
    for c in clients:
        threading.Thread(target=_read, args=(c, args.pid, updates, woken), daemon=True).start()
    deadline = time.monotonic() + args.duration if args.duration else None
    console = Console(file=out.out, highlight=False)
    with (
        _keys() as interactive,
        Live(
            view.render(time.monotonic()), console=console, auto_refresh=False, screen=False
        ) as live,
    ):
        while deadline is None or time.monotonic() < deadline:
            wait = _TICK if deadline is None else max(0.0, min(_TICK, deadline - time.monotonic()))
            watched = [wake, sys.stdin.fileno()] if interactive else [wake]
            ready, _, _ = select.select(watched, [], [], wait)
            key = os.read(sys.stdin.fileno(), 1) if sys.stdin.fileno() in ready else b""
            if key in (b"q", b"Q"):
                break
            if wake in ready:
                os.read(wake, 4096)
            now = time.monotonic()
            while True:
                try:
                    server, item = updates.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, str):
                    view.failed(server, item)
                else:
                    view.apply(server, item, now)
            live.update(view.render(now), refresh=True)
    # The readers are daemon threads; closing the clients (the caller does) ends their calls.
    return 0
