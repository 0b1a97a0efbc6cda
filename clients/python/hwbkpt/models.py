"""Typed values shared by the sync and async clients (no gRPC types leak out of here)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Literal

from hwbkpt._machine_models import (
    Holder,
    Limit,
    MachineInfo,
    Mechanism,
    Pool,
    SessionNews,
    Slot,
    SlotMap,
    SlotMapUpdate,
    SpawnedProcess,
    ThreadSlots,
    TouchResult,
)
from hwbkpt._wire_names import PRIORITY_PRESETS

__all__ = [
    "PRIORITY_PRESETS",
    "Access",
    "Action",
    "Breakpoint",
    "BreakpointSpec",
    "BreakpointState",
    "Chunk",
    "Displaced",
    "Event",
    "EventKind",
    "EventPayload",
    "Filter",
    "Frame",
    "HaltTimeout",
    "Hit",
    "HitsDropped",
    "Holder",
    "Limit",
    "MachineInfo",
    "Mechanism",
    "PendingReason",
    "Pool",
    "Progress",
    "Removed",
    "Restored",
    "Scope",
    "SessionNews",
    "Slot",
    "SlotMap",
    "SlotMapUpdate",
    "SpawnedProcess",
    "StateChanged",
    "TargetExec",
    "TargetExited",
    "ThreadSlots",
    "TouchResult",
    "le_int",
]


class Scope(enum.StrEnum):
    KERNEL = "kernel"
    PROCESS = "process"
    THREAD = "thread"


class Access(enum.StrEnum):
    EXEC = "exec"
    WRITE = "write"
    READ = "read"
    READ_WRITE = "rw"


class Action(enum.StrEnum):
    NOTIFY = "notify"
    HALT = "halt"


class BreakpointState(enum.StrEnum):
    UNSPECIFIED = "unspecified"
    INSTALLED = "installed"
    PARTIAL = "partial"
    PENDING = "pending"
    REMOVED = "removed"


class PendingReason(enum.StrEnum):
    NONE = "none"
    PRIORITY = "priority"
    EXTERNAL = "external"
    NO_THREADS = "no_threads"
    #: The location names a library not loaded yet; placed when it is mapped.
    UNRESOLVED = "unresolved"


def le_int(data: bytes) -> int | None:
    """The little-endian unsigned integer of 1..8 bytes; ``None`` when empty or longer."""
    if 0 < len(data) <= 8:
        return int.from_bytes(data, "little")
    return None


@dataclass(frozen=True, slots=True)
class Filter:
    changed_only: bool = False
    #: Report only hits after which the value equals these bytes (little-endian).
    equals: bytes | None = None
    ignore_first: int = 0
    #: Remove the request after this many reported hits (0: never).
    stop_after: int = 0


@dataclass(frozen=True, slots=True)
class BreakpointSpec:
    scope: Scope
    address: int = 0
    length: int = 0
    access: Access = Access.WRITE
    pid: int = 0
    tid: int = 0
    #: ``None`` lets the broker apply its default (normal, 25).
    priority: int | None = None
    action: Action = Action.NOTIFY
    filter: Filter = field(default_factory=Filter)
    symbol: str = ""
    nonstop: bool = False
    #: Kernel scope: sample the kernel call chain with each hit.
    call_chain: bool = False


@dataclass(frozen=True, slots=True)
class Chunk:
    pool: str
    address: int
    length: int
    access: Access | None


@dataclass(frozen=True, slots=True)
class Member:
    """One leaf of a resolved struct or array: ``name`` at ``offset``, ``size`` bytes."""

    offset: int
    size: int
    name: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a request's location string named in the target (issue 13)."""

    location: str
    address: int
    #: Bytes its type covers (0: unknown; the request's length applied).
    length: int
    #: Canonical words: ``cfg.limit``, ``table[3]``, ``main+0x10``, ``named.c:42``.
    symbol: str
    module: str
    build_id: str
    load_bias: int
    type_name: str
    #: ``file.c:42`` of the instruction or of the variable's declaration.
    source: str
    members: tuple[Member, ...] = ()


@dataclass(frozen=True, slots=True)
class Breakpoint:
    id: int
    session_name: str
    spec: BreakpointSpec
    state: BreakpointState
    pending_reason: PendingReason
    installed_tids: tuple[int, ...]
    pending_tids: tuple[int, ...]
    chunks: tuple[Chunk, ...]
    hit_count: int
    reported_count: int
    priority: int
    #: What ``spec.symbol`` resolved to; None for a request made by address.
    resolution: Resolution | None = None


# --- events -----------------------------------------------------------------------------
EventKind = Literal[
    "state",
    "hit",
    "displaced",
    "restored",
    "removed",
    "hits_dropped",
    "target_exited",
    "halt_timeout",
    "target_exec",
    "progress",
]


@dataclass(frozen=True, slots=True)
class StateChanged:
    KIND: ClassVar[EventKind] = "state"
    state: BreakpointState
    pending_reason: PendingReason
    installed_tids: tuple[int, ...]
    pending_tids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Frame:
    """One return address of a kernel call chain."""

    ip: int
    #: "function+0x1c" where known.
    symbol: str = ""


@dataclass(frozen=True, slots=True)
class Hit:
    KIND: ClassVar[EventKind] = "hit"
    pid: int
    tid: int
    #: -1 when unknown.
    cpu: int
    ip: int
    address: int
    #: READ_WRITE means "read or write": the broker could not tell (see ``access_reason``).
    access: Access | None
    #: The watched region after the access (little-endian bytes; empty for exec).
    value: bytes
    #: The watched region before the access.
    old_value: bytes
    hit_count: int
    generation: int
    halted: bool = False
    ip_symbol: str = ""
    value_late: bool = False
    #: The kernel call chain, innermost first, when the request asked for it.
    call_chain: tuple[Frame, ...] = ()
    #: ``file.c:42`` of ``ip``, where the binary has line tables (issue 13).
    ip_line: str = ""
    #: ``address`` as ``symbol`` or ``symbol+0x8``, where known.
    address_symbol: str = ""
    #: For a request resolved to a struct or an array: the member(s) whose bytes changed.
    member: str = ""

    @property
    def value_int(self) -> int | None:
        """``value`` as a little-endian integer when it is 1..8 bytes."""
        return le_int(self.value)

    @property
    def old_value_int(self) -> int | None:
        return le_int(self.old_value)

    @property
    def access_reason(self) -> str:
        """Why ``access`` is "read or write" ("" when it is not): the hardware did not say
        (x86), and the value is what it was, or what it was is unknown."""
        if self.access is not Access.READ_WRITE:
            return ""
        if not self.old_value:
            return "the value before is unknown"
        return "the value did not change: a read, or a store of the same value"


@dataclass(frozen=True, slots=True)
class Displaced:
    KIND: ClassVar[EventKind] = "displaced"
    tids: tuple[int, ...]
    by_breakpoint_id: int
    by_session: str
    by_priority: int
    #: The breakpoint's chunks whose slots the displacing request took; its other
    #: chunks left their slots free (a breakpoint is installed whole or not at all).
    taken: tuple[Chunk, ...] = ()


@dataclass(frozen=True, slots=True)
class Restored:
    KIND: ClassVar[EventKind] = "restored"
    tids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Removed:
    KIND: ClassVar[EventKind] = "removed"
    #: The proto's RemovedReason as a word: "client", "lease", "stop_after",
    #: "target_exited", "target_exec", "session_closed", "shutdown", "detached", "unresolved",
    #: "policy".
    reason: str


@dataclass(frozen=True, slots=True)
class HitsDropped:
    KIND: ClassVar[EventKind] = "hits_dropped"
    count: int


@dataclass(frozen=True, slots=True)
class TargetExited:
    KIND: ClassVar[EventKind] = "target_exited"
    pid: int
    tid: int
    exit_code: int


@dataclass(frozen=True, slots=True)
class HaltTimeout:
    KIND: ClassVar[EventKind] = "halt_timeout"
    tid: int
    seconds: float


@dataclass(frozen=True, slots=True)
class TargetExec:
    KIND: ClassVar[EventKind] = "target_exec"
    pid: int


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a long operation of the session came (issue 14): an attach of a process with
    many threads, or the first name resolution in a large binary. A first report, a few
    more, and a last one with ``finished`` (then ``done == total``)."""

    KIND: ClassVar[EventKind] = "progress"
    #: "attach" (done/total count threads) or "resolve" (they count bytes read).
    operation: str
    pid: int
    #: The binary being read ("resolve"); "" for "attach".
    module: str
    #: The part being read ("symbols", "debug info"); "" for "attach".
    detail: str
    done: int
    #: As known now (0: unknown); it may grow.
    total: int
    finished: bool


EventPayload = (
    StateChanged
    | Hit
    | Displaced
    | Restored
    | Removed
    | HitsDropped
    | TargetExited
    | HaltTimeout
    | TargetExec
    | Progress
)


@dataclass(frozen=True, slots=True)
class Event:
    """One numbered event of a session: ``seq`` runs 1, 2, 3, ... without gaps."""

    seq: int
    time: datetime
    #: The request it concerns (0 for session-wide events).
    breakpoint_id: int
    payload: EventPayload

    @property
    def kind(self) -> EventKind:
        """``"state"``, ``"hit"``, ``"displaced"``, ... (the payload's kind name)."""
        return self.payload.KIND


# --- machine and slot map --------------------------------------------------------------
