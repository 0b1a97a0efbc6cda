"""What the broker says about the machine and its slots (DescribeMachine, GetSlotMap,
WatchSlotMap) and what the simulated machine answers: typed values for both clients.

Kept apart from ``models`` (requests, hits, events) so each reads in one sitting;
``hwbkpt.models`` re-exports every name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hwbkpt.models import Access, Breakpoint, Chunk, Event

__all__ = [
    "Holder",
    "Limit",
    "MachineInfo",
    "Mechanism",
    "Pool",
    "SessionNews",
    "Slot",
    "SlotMap",
    "SlotMapUpdate",
    "SpawnedProcess",
    "ThreadSlots",
    "TouchResult",
]


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    slots: int
    accesses: tuple[Access, ...]


@dataclass(frozen=True, slots=True)
class Limit:
    """One of the broker's limits: a call over it is refused naming it."""

    name: str
    value: float
    #: The hwbkptd flag that sets it.
    flag: str
    description: str


@dataclass(frozen=True, slots=True)
class Mechanism:
    #: The proto's MechanismName as a word: "ptrace", "perf-kernel", "perf-nonstop", "bpf", "sim".
    name: str
    available: bool
    #: Why it is not available, or what it needs.
    reason: str


@dataclass(frozen=True, slots=True)
class MachineInfo:
    #: The layout as hwbkptd --machine normalises it: "sim", "sim:arm64", "native".
    machine: str
    arch: str
    pools: tuple[Pool, ...]
    mechanisms: tuple[Mechanism, ...]
    #: The proto's Arming as a word: "perf", "debugreg", "simulated" or "".
    arming: str
    notes: tuple[str, ...]
    version: str
    max_region_length: int
    #: Empty from a broker before issue 12.
    limits: tuple[Limit, ...] = ()
    #: The proto's MachineKind as a word: "sim" or "native".
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Holder:
    breakpoint_id: int
    session_name: str
    priority: int


@dataclass(frozen=True, slots=True)
class Slot:
    pool: str
    index: int
    #: ``None`` when the slot is free.
    chunk: Chunk | None
    holders: tuple[Holder, ...]
    #: Held outside the broker.
    external: bool = False


@dataclass(frozen=True, slots=True)
class ThreadSlots:
    pid: int
    #: 0 is the CPU context (kernel requests on every CPU).
    tid: int
    generation: int
    slots: tuple[Slot, ...]
    halted: bool = False


@dataclass(frozen=True, slots=True)
class SlotMap:
    threads: tuple[ThreadSlots, ...]
    #: Requests not installed everywhere they apply.
    waiting: tuple[Breakpoint, ...]


@dataclass(frozen=True, slots=True)
class SessionNews:
    """One event a session was told, as a slot-map watcher sees it (``seq`` is 0)."""

    session_id: str
    session_name: str
    event: Event


@dataclass(frozen=True, slots=True)
class SlotMapUpdate:
    """One update of ``watch_slot_map``: the slot map now and what happened since the last."""

    slot_map: SlotMap
    #: Hits per breakpoint id since the watch began (the rate is the difference over time).
    hits: Mapping[int, int]
    #: Hits dropped per breakpoint id (its session's buffer was full) since the watch began.
    dropped: Mapping[int, int]
    #: State changes, displacements, restores and removals since the previous update.
    news: tuple[SessionNews, ...]
    #: (session id, session name) of every open session.
    sessions: tuple[tuple[str, str], ...]
    time: datetime


# --- simulated machine -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SpawnedProcess:
    pid: int
    tids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TouchResult:
    #: Requests that took the hit (before filters).
    breakpoint_ids: tuple[int, ...]
    #: True when the touching thread is now halted.
    halted: bool
