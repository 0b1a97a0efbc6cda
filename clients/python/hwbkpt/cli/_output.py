"""How the command line prints: one JSON object per line (``--json``) or short plain lines."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from hwbkpt import models as m

__all__ = [
    "Printer",
    "breakpoint_line",
    "breakpoint_record",
    "event_line",
    "event_record",
    "holder_text",
    "json_value",
    "machine_lines",
    "machine_record",
    "slot_map_lines",
    "thread_record",
    "waiting_record",
]


class Printer:
    """Writes records as JSON lines or as text lines, flushing each (stdout may be a pipe)."""

    def __init__(self, as_json: bool, out: TextIO | None = None) -> None:
        self.as_json = as_json
        self.out = out or sys.stdout

    def emit(self, record: dict[str, Any], text: str | list[str]) -> None:
        if self.as_json:
            self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
        else:
            lines = text if isinstance(text, list) else [text]
            self.out.write("".join(line + "\n" for line in lines))
        self.out.flush()


def json_value(data: bytes) -> int | str | None:
    """An int for 1..8 bytes (little-endian), the bytes in hex for longer, None when empty."""
    if not data:
        return None
    as_int = m.le_int(data)
    return as_int if as_int is not None else data.hex()


def _value_text(data: bytes) -> str:
    as_int = m.le_int(data)
    if as_int is None:
        return data.hex() if data else "-"
    return f"{as_int} ({as_int:#x})"


def _tids(tids: tuple[int, ...]) -> str:
    return ",".join(map(str, tids)) if tids else "-"


def holder_text(h: m.Holder) -> str:
    """``session#id(prio)``, the slot map's way of naming a holder."""
    return f"{h.session_name}#{h.breakpoint_id}({h.priority})"


def _access(a: m.Access | None) -> str:
    return a.value if a is not None else "?"


#: On a hit, READ_WRITE is one access the broker could not tell: "read or write".
_HIT_ACCESS_JSON = {m.Access.READ_WRITE: "read_or_write"}


def _hit_access(h: m.Hit) -> str:
    if h.access is m.Access.READ_WRITE:
        return "read or write (" + ("same value" if h.old_value else "value before unknown") + ")"
    return _access(h.access)


# --- events ----------------------------------------------------------------------------
def event_record(ev: m.Event) -> dict[str, Any]:
    """The JSON form of an event, as ``hwbkpt --json watch`` prints it."""
    rec: dict[str, Any] = {
        "event": ev.kind,
        "breakpoint": ev.breakpoint_id,
        "seq": ev.seq,
        "time": ev.time.isoformat(),
    }
    p = ev.payload
    if isinstance(p, m.Hit):
        rec.update(
            pid=p.pid,
            tid=p.tid,
            address=p.address,
            ip=p.ip,
            value=json_value(p.value),
            old_value=json_value(p.old_value),
            hit_count=p.hit_count,
            access=_HIT_ACCESS_JSON.get(p.access, p.access.value) if p.access else None,
            cpu=p.cpu,
            generation=p.generation,
            halted=p.halted,
        )
        if p.access_reason:
            rec["access_reason"] = p.access_reason
        if p.ip_symbol:
            rec["ip_symbol"] = p.ip_symbol
        if p.ip_line:
            rec["ip_line"] = p.ip_line
        if p.address_symbol:
            rec["address_symbol"] = p.address_symbol
        if p.member:
            rec["member"] = p.member
        if p.value_late:
            rec["value_late"] = True
        if p.call_chain:
            rec["call_chain"] = [{"ip": f.ip, "symbol": f.symbol} for f in p.call_chain]
    elif isinstance(p, m.StateChanged):
        rec.update(
            state=p.state.value,
            reason=p.pending_reason.value,
            installed_tids=list(p.installed_tids),
            pending_tids=list(p.pending_tids),
        )
    elif isinstance(p, m.Displaced):
        rec.update(
            by_session=p.by_session,
            by_priority=p.by_priority,
            by_breakpoint=p.by_breakpoint_id,
            tids=list(p.tids),
            taken=[
                {"pool": c.pool, "address": c.address, "length": c.length}
                | {"access": _access(c.access)}
                for c in p.taken
            ],
        )
    elif isinstance(p, m.Restored):
        rec.update(tids=list(p.tids))
    elif isinstance(p, m.Removed):
        rec.update(reason=p.reason)
    elif isinstance(p, m.HitsDropped):
        rec.update(count=p.count)
    elif isinstance(p, m.TargetExited):
        rec.update(pid=p.pid, tid=p.tid, exit_code=p.exit_code)
    elif isinstance(p, m.HaltTimeout):
        rec.update(tid=p.tid, seconds=p.seconds)
    elif isinstance(p, m.TargetExec):
        rec.update(pid=p.pid)
    elif isinstance(p, m.Progress):
        rec.update(operation=p.operation, pid=p.pid, module=p.module, detail=p.detail)
        rec.update(done=p.done, total=p.total, finished=p.finished)
    return rec


def event_line(ev: m.Event) -> str:
    head = f"#{ev.seq:<4} {ev.kind:<13} bp {ev.breakpoint_id}"
    p = ev.payload
    if isinstance(p, m.Hit):
        where = f"{p.ip:#x}" + (f" <{p.ip_symbol}>" if p.ip_symbol else "")
        if p.ip_line:
            where += f" {p.ip_line}"
        data = f"{p.address:#x}" + (f" <{p.address_symbol}>" if p.address_symbol else "")
        if p.member:
            data += f" member {p.member}"
        text = (
            f"{head}  tid {p.tid}  {_hit_access(p)} {data}  "
            f"value {_value_text(p.value)}  old {_value_text(p.old_value)}  "
            f"ip {where}  count {p.hit_count}"
        )
        if p.halted:
            text += "  [halted]"
        if p.value_late:
            text += "  [value read late]"
        for f in p.call_chain:
            text += f"\n        {f.ip:#x} <{f.symbol or '?'}>"
        return text
    if isinstance(p, m.StateChanged):
        return f"{head}  {_state_text(p.state, p.pending_reason, p.installed_tids)}"
    if isinstance(p, m.Displaced):
        text = (
            f"{head}  by {p.by_session}#{p.by_breakpoint_id} "
            f"(priority {p.by_priority}) in tids {_tids(p.tids)}"
        )
        if p.taken:
            # Which slots the stronger request took; the rest of the region's are free.
            text += "  took " + ", ".join(
                f"{c.address:#x}/{c.length} {_access(c.access)}" for c in p.taken
            )
        return text
    if isinstance(p, m.Restored):
        return f"{head}  in tids {_tids(p.tids)}"
    if isinstance(p, m.Removed):
        return f"{head}  ({p.reason})"
    if isinstance(p, m.HitsDropped):
        return f"{head}  {p.count} hits dropped (client too slow)"
    if isinstance(p, m.TargetExited):
        return f"{head}  pid {p.pid} tid {p.tid} exited with {p.exit_code}"
    if isinstance(p, m.HaltTimeout):
        return f"{head}  tid {p.tid} resumed after {p.seconds:g} s halted"
    if isinstance(p, m.Progress):
        what = f"{p.operation} pid {p.pid}" + (f" {p.module} {p.detail}" if p.module else "")
        return f"{head}  {what} {p.done}/{p.total}" + ("  [finished]" if p.finished else "")
    return f"{head}  pid {p.pid} called exec"


def _state_text(
    state: m.BreakpointState, reason: m.PendingReason, installed: tuple[int, ...]
) -> str:
    text = state.value
    if reason is not m.PendingReason.NONE:
        text += f" ({reason.value})"
    if installed:
        text += f" in tids {_tids(installed)}"
    return text


# --- breakpoints -----------------------------------------------------------------------
def breakpoint_record(bp: m.Breakpoint) -> dict[str, Any]:
    s = bp.spec
    return {
        "breakpoint": bp.id,
        "session": bp.session_name,
        "scope": s.scope.value,
        "pid": s.pid,
        "tid": s.tid,
        "address": s.address,
        "symbol": s.symbol or None,
        "length": s.length,
        "access": s.access.value,
        "action": s.action.value,
        "priority": bp.priority,
        "state": bp.state.value,
        "reason": bp.pending_reason.value,
        "installed_tids": list(bp.installed_tids),
        "pending_tids": list(bp.pending_tids),
        "chunks": [
            {"pool": c.pool, "address": c.address, "length": c.length, "access": _access(c.access)}
            for c in bp.chunks
        ],
        "hit_count": bp.hit_count,
        "reported_count": bp.reported_count,
    }


def _target_text(s: m.BreakpointSpec) -> str:
    where = s.symbol or f"{s.address:#x}"
    if s.scope is m.Scope.KERNEL:
        return f"kernel {where}"
    if s.scope is m.Scope.THREAD:
        return f"tid {s.tid} {where}"
    return f"pid {s.pid} {where}"


def breakpoint_line(bp: m.Breakpoint) -> str:
    s = bp.spec
    return (
        f"{bp.session_name}#{bp.id}({bp.priority}) {_target_text(s)}/{s.length} "
        f"{s.access.value}: {_state_text(bp.state, bp.pending_reason, bp.installed_tids)}"
        + (f", pending in tids {_tids(bp.pending_tids)}" if bp.pending_tids else "")
    )


# --- machine ---------------------------------------------------------------------------
def machine_record(info: m.MachineInfo) -> dict[str, Any]:
    return {
        "machine": info.machine,
        "kind": info.kind,
        "arch": info.arch,
        "version": info.version,
        "pools": [
            {"name": p.name, "slots": p.slots, "accesses": [a.value for a in p.accesses]}
            for p in info.pools
        ],
        "mechanisms": [
            {"name": x.name, "available": x.available, "reason": x.reason} for x in info.mechanisms
        ],
        "arming": info.arming or None,
        "max_region_length": info.max_region_length,
        "notes": list(info.notes),
        "limits": {x.name: _limit_value(x.value) for x in info.limits},
    }


def _limit_value(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def machine_lines(info: m.MachineInfo) -> list[str]:
    lines = [
        f"machine     {info.machine} ({info.arch}), broker {info.version or '?'}",
        f"arming      {info.arming or '- (simulated)'}",
        f"max region  {info.max_region_length} bytes",
        "pools",
    ]
    for p in info.pools:
        accesses = ", ".join(a.value for a in p.accesses)
        lines.append(f"  {p.name:<8} {p.slots} slots ({accesses})")
    lines.append("mechanisms")
    for x in info.mechanisms:
        status = "available" if x.available else "not available"
        lines.append(f"  {x.name:<12} {status}" + (f": {x.reason}" if x.reason else ""))
    if info.limits:
        lines.append("limits")
        lines.extend(
            f"  {x.name:<26} {_limit_value(x.value):<10} {x.flag}: {x.description}"
            for x in info.limits
        )
    if info.notes:
        lines.append("notes")
        lines.extend(f"  - {n}" for n in info.notes)
    return lines


# --- slot map --------------------------------------------------------------------------
def thread_record(t: m.ThreadSlots) -> dict[str, Any]:
    return {
        "pid": t.pid,
        "tid": t.tid,
        "generation": t.generation,
        "halted": t.halted,
        "slots": [
            {
                "pool": s.pool,
                "index": s.index,
                "chunk": None
                if s.chunk is None
                else {
                    "address": s.chunk.address,
                    "length": s.chunk.length,
                    "access": _access(s.chunk.access),
                },
                "holders": [
                    {
                        "breakpoint": h.breakpoint_id,
                        "session": h.session_name,
                        "priority": h.priority,
                    }
                    for h in s.holders
                ],
                "external": s.external,
            }
            for s in t.slots
        ],
    }


def _holder_record(h: m.Holder) -> dict[str, Any]:
    return {"breakpoint": h.breakpoint_id, "session": h.session_name, "priority": h.priority}


def waiting_record(bp: m.Breakpoint) -> dict[str, Any]:
    return {"waiting": breakpoint_record(bp)}


def slot_map_lines(sm: m.SlotMap) -> list[str]:
    lines: list[str] = []
    for t in sm.threads:
        who = "CPU context (kernel requests)" if t.tid == 0 else f"pid {t.pid} tid {t.tid}"
        lines.append(f"{who}  generation {t.generation}" + ("  [halted]" if t.halted else ""))
        for s in t.slots:
            name = f"{s.pool}{s.index}"
            if s.external:
                lines.append(f"  {name:<7} held outside the broker")
            elif s.chunk is None:
                lines.append(f"  {name:<7} free")
            else:
                c = s.chunk
                chunk = f"{c.address:#x}/{c.length} {_access(c.access)}"
                holders = " ".join(holder_text(h) for h in s.holders)
                lines.append(f"  {name:<7} {chunk:<24} {holders}")
    if not sm.threads:
        lines.append("no traced threads")
    if sm.waiting:
        lines.append("waiting")
        lines.extend(f"  {breakpoint_line(bp)}" for bp in sm.waiting)
    return lines
