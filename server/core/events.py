"""Session events (DESIGN sections 2, 3 and 6) as plain values.

INTERFACE — the broker helper may add helpers here but not change these shapes
without updating ``hwbkptd.api.convert``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from hwbkptd.core.model import Access, Chunk, PendingReason, RequestState

__all__ = [
    "Displaced",
    "Event",
    "EventKind",
    "HaltTimeout",
    "Hit",
    "HitsDropped",
    "Progress",
    "ProgressOperation",
    "Removed",
    "RemovedReason",
    "Restored",
    "StateChanged",
    "TargetExec",
    "TargetExited",
]


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: RequestState
    reason: PendingReason
    installed_tids: tuple[int, ...]
    pending_tids: tuple[int, ...]


# Hit and Event are built once per hit per holder: not frozen, because a frozen
# dataclass's __init__ costs about 8 times as much (object.__setattr__ per field).
# Nothing changes them after they are built.
@dataclass(slots=True)
class Hit:
    pid: int
    tid: int
    cpu: int
    ip: int
    address: int
    #: READ_WRITE on a hit: a read or a write, the broker could not tell (core/hits.py).
    access: Access | None
    value: bytes
    old_value: bytes
    hit_count: int
    generation: int
    halted: bool = False
    ip_symbol: str = ""
    value_late: bool = False
    #: Kernel call chain as (ip, symbol) pairs, innermost first; empty unless asked for.
    call_chain: tuple[tuple[int, str], ...] = ()
    #: In words (issue 13): ``file.c:42`` of ip, ``counter+0x8``, the struct member written.
    ip_line: str = ""
    address_symbol: str = ""
    member: str = ""


@dataclass(frozen=True, slots=True)
class Displaced:
    tids: tuple[int, ...]
    by_breakpoint_id: int
    by_session: str
    by_priority: int
    #: The request's chunks whose slots the displacing request took (its other chunks
    #: left their slots free: a request is installed whole or not at all).
    taken: tuple[Chunk, ...] = ()


@dataclass(frozen=True, slots=True)
class Restored:
    tids: tuple[int, ...]


#: Why a request is gone: the whole set, so that mypy holds every ``remove`` to it and
#: the API's table (``convert.REMOVED_TO_WIRE``, the proto's RemovedReason) can cover it.
RemovedReason = Literal[
    "client",
    "lease",
    "stop_after",
    "target_exited",
    "target_exec",
    "session_closed",
    "shutdown",
    "detached",
    "unresolved",
    "policy",
]


@dataclass(frozen=True, slots=True)
class Removed:
    reason: RemovedReason


@dataclass(frozen=True, slots=True)
class HitsDropped:
    count: int


@dataclass(frozen=True, slots=True)
class TargetExited:
    pid: int
    tid: int
    exit_code: int


@dataclass(frozen=True, slots=True)
class HaltTimeout:
    tid: int
    seconds: float


@dataclass(frozen=True, slots=True)
class TargetExec:
    pid: int


class ProgressOperation(Enum):
    """What a long operation does (issue 14)."""

    #: Attaching a process: done and total count threads.
    ATTACH = "attach"
    #: Reading a binary to resolve a name: done and total count bytes.
    RESOLVE = "resolve"


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a long operation came; built by ``core.progress.ProgressReporter`` only."""

    operation: ProgressOperation
    pid: int
    #: The binary being read (RESOLVE); "" for ATTACH.
    module: str
    #: The part being read ("symbols", "debug info"); "" for ATTACH.
    detail: str
    done: int
    #: As known now (0: unknown); the finished report has done == total.
    total: int
    finished: bool


EventKind = (
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


@dataclass(slots=True)
class Event:
    """One numbered event of a session; ``seq`` runs 1, 2, 3, ... without gaps."""

    seq: int
    time_ns: int
    breakpoint_id: int
    kind: EventKind
