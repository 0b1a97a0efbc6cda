"""``hwbkpt slots`` and ``hwbkpt health`` over one broker or several (``--server A --server B``):
one table with a column naming each row's broker, so a fleet reads as one machine room."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console
from rich.table import Table

from hwbkpt import models as m
from hwbkpt._health import SERVING
from hwbkpt.cli._output import (
    Printer,
    breakpoint_line,
    holder_text,
    thread_record,
    waiting_record,
)
from hwbkpt.client import Client
from hwbkpt.errors import HwbkptError

__all__ = ["cmd_health", "cmd_slots", "slots_table", "table_text"]

#: Width of the table when stdout is not a terminal (a pipe, a file, a test): wide enough
#: that no row wraps.
PIPE_WIDTH = 160


def _chunk_text(s: m.Slot) -> str:
    if s.external:
        return "held outside the broker"
    if s.chunk is None:
        return "free"
    c = s.chunk
    access = c.access.value if c.access is not None else "?"
    return f"{c.address:#x}/{c.length} {access}"


def slots_table(maps: Sequence[tuple[str, m.SlotMap]]) -> Table:
    """Every thread's slots of every broker: one row per slot, then what waits."""
    table = Table(title="slots", show_lines=False, expand=False)
    for column in ("server", "pid", "tid", "gen", "slot", "watches", "holders"):
        table.add_column(column, no_wrap=True, overflow="fold")
    for server, sm in maps:
        for t in sm.threads:
            tid = "cpu" if t.tid == 0 else str(t.tid) + (" halted" if t.halted else "")
            for s in t.slots:
                holders = " ".join(holder_text(h) for h in s.holders)
                row = (server, str(t.pid), tid, str(t.generation), f"{s.pool}{s.index}")
                table.add_row(*row, _chunk_text(s), holders)
        if not sm.threads:
            table.add_row(server, "-", "-", "-", "-", "no traced threads", "")
        for bp in sm.waiting:
            table.add_row(server, "-", "-", "-", "waiting", breakpoint_line(bp), "")
    return table


def table_text(table: Table, out: TextIO) -> None:
    width = shutil.get_terminal_size((PIPE_WIDTH, 24)).columns if out.isatty() else PIPE_WIDTH
    Console(file=out, width=width, highlight=False, soft_wrap=False).print(table)


def cmd_slots(clients: Sequence[Client], args: argparse.Namespace, out: Printer) -> int:
    maps = [(c.address, c.slot_map(args.pid, args.pool)) for c in clients]
    if out.as_json:
        for server, sm in maps:
            for t in sm.threads:
                out.emit({"server": server, **thread_record(t)}, "")
            for bp in sm.waiting:
                out.emit({"server": server, **waiting_record(bp)}, "")
        return 0
    table_text(slots_table(maps), out.out)
    out.out.flush()
    return 0


def cmd_health(clients: Sequence[Client], args: argparse.Namespace, out: Printer) -> int:
    """One line per broker; 0 when every one answers SERVING."""
    healthy = True
    for c in clients:
        try:
            status = c.health(args.service, args.timeout)
        except HwbkptError as err:
            status = f"unreachable: {err.code}"
            print(f"error: {c.address}: {err}", file=sys.stderr)
        healthy = healthy and status == SERVING
        out.emit(
            {"server": c.address, "service": args.service, "status": status},
            f"{c.address} {status}",
        )
    return 0 if healthy else 1
