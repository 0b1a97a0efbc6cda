"""What /proc says about a process: its threads, its tracer, its thread group."""

from __future__ import annotations

import os

__all__ = [
    "ProcStatus",
    "comm",
    "read_status",
    "sigtrap_pending",
    "task_ids",
    "thread_belongs",
    "yama_ptrace_scope",
]

YAMA_SCOPE_PATH = "/proc/sys/kernel/yama/ptrace_scope"


class ProcStatus:
    """The fields of /proc/PID/status the mechanism uses."""

    __slots__ = ("name", "state", "tgid", "tracer_pid")

    def __init__(self, name: str, state: str, tgid: int, tracer_pid: int) -> None:
        self.name = name
        self.state = state
        self.tgid = tgid
        self.tracer_pid = tracer_pid


def read_status(pid: int) -> ProcStatus | None:
    """/proc/PID/status, or None when there is no such process or thread."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return ProcStatus(
        name=fields.get("Name", ""),
        state=fields.get("State", "?")[:1],
        tgid=int(fields.get("Tgid", "0") or 0),
        tracer_pid=int(fields.get("TracerPid", "0") or 0),
    )


def task_ids(pid: int) -> list[int]:
    """The thread ids of a process, leader first; empty when it is gone."""
    try:
        tids = [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except (FileNotFoundError, ProcessLookupError):
        return []
    tids.sort(key=lambda tid: (tid != pid, tid))
    return tids


def thread_belongs(pid: int, tid: int) -> bool:
    """True when ``tid`` is a thread of process ``pid`` (not a separate process)."""
    return os.path.exists(f"/proc/{pid}/task/{tid}")


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def yama_ptrace_scope() -> int | None:
    """Yama's ptrace_scope (0-3), or None where Yama is not built in."""
    try:
        with open(YAMA_SCOPE_PATH, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def sigtrap_pending(pid: int, tid: int) -> bool:
    """True when SIGTRAP is pending in the thread itself (a trap not yet reported)."""
    bit = 1 << (5 - 1)  # SIGTRAP is 5
    try:
        with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("SigPnd:"):
                    return bool(int(line.split()[1], 16) & bit)
    except OSError:
        pass
    return False
