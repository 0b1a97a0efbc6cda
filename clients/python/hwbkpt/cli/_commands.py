"""``hwbkpt info``, ``hwbkpt slots`` and ``hwbkpt sim ...``."""

from __future__ import annotations

import argparse

from hwbkpt.cli._output import (
    Printer,
    machine_lines,
    machine_record,
    slot_map_lines,
    thread_record,
    waiting_record,
)
from hwbkpt.client import Client

__all__ = ["cmd_info", "cmd_sim", "cmd_slots"]


def cmd_info(client: Client, args: argparse.Namespace, out: Printer) -> int:
    info = client.describe()
    out.emit(machine_record(info), machine_lines(info))
    return 0


def cmd_slots(client: Client, args: argparse.Namespace, out: Printer) -> int:
    sm = client.slot_map(args.pid, args.pool)
    if out.as_json:
        for t in sm.threads:
            out.emit(thread_record(t), "")
        for bp in sm.waiting:
            out.emit(waiting_record(bp), "")
    else:
        out.emit({}, slot_map_lines(sm))
    return 0


def cmd_sim(client: Client, args: argparse.Namespace, out: Printer) -> int:
    if args.sim_command == "spawn":
        proc = client.sim_spawn(args.threads)
        out.emit({"pid": proc.pid, "tids": list(proc.tids)}, str(proc.pid))
        return 0
    res = client.sim_touch(
        args.pid,
        args.address,
        access=args.access,
        value=args.value,
        tid=args.tid,
        size=args.size,
    )
    ids = " ".join(map(str, res.breakpoint_ids))
    text = f"hit: {ids}" if ids else "no hit"
    if res.halted:
        text += " (thread halted)"
    out.emit({"breakpoint_ids": list(res.breakpoint_ids), "halted": res.halted}, text)
    return 0
