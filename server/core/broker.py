"""The broker: one object on the event loop that owns all state (DESIGN section 5).

INTERFACE STUB — the broker helper replaces the bodies. ``hwbkptd.api`` codes
against these signatures and dataclasses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from hwbkptd.arch.base import Arch
from hwbkptd.core.events import Event
from hwbkptd.core.mechanism import HitReport, Mechanism, MechanismInfo, Refusal
from hwbkptd.core.model import (
    Access,
    Action,
    Chunk,
    Filter,
    PendingReason,
    RequestState,
    Scope,
)

__all__ = [
    "Broker",
    "BrokerConfig",
    "BreakpointSpec",
    "BreakpointView",
    "Identity",
    "MachineDescription",
    "SessionInfo",
    "SlotMapView",
    "SlotView",
    "ThreadSlotsView",
]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling. Without a policy file the local socket is fully trusted."""

    name: str = "local"
    may_kernel: bool = True
    max_priority: int = 100
    may_halt: bool = True
    max_requests: int = 10_000


@dataclass(frozen=True, slots=True)
class BreakpointSpec:
    scope: Scope
    address: int
    length: int
    access: Access
    pid: int = 0
    tid: int = 0
    priority: int | None = None
    action: Action = Action.NOTIFY
    filter: Filter = Filter()
    symbol: str = ""
    nonstop: bool = False


@dataclass(frozen=True, slots=True)
class BreakpointView:
    id: int
    session_name: str
    spec: BreakpointSpec
    state: RequestState
    reason: PendingReason
    installed_tids: tuple[int, ...]
    pending_tids: tuple[int, ...]
    chunks: tuple[Chunk, ...]
    hit_count: int
    reported_count: int
    priority: int


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    name: str
    token: str
    lease_seconds: float
    last_seq: int


@dataclass(frozen=True, slots=True)
class SlotView:
    pool: str
    index: int
    chunk: Chunk | None
    #: (breakpoint id, session name, priority), in rank order.
    holders: tuple[tuple[int, str, int], ...]
    external: bool = False


@dataclass(frozen=True, slots=True)
class ThreadSlotsView:
    pid: int
    tid: int
    generation: int
    slots: tuple[SlotView, ...]
    halted: bool = False


@dataclass(frozen=True, slots=True)
class SlotMapView:
    threads: tuple[ThreadSlotsView, ...]
    waiting: tuple[BreakpointView, ...]


@dataclass(frozen=True, slots=True)
class MachineDescription:
    machine: str
    arch: str
    pools: Mapping[str, int]
    pool_accesses: Mapping[str, tuple[Access, ...]]
    mechanisms: tuple[MechanismInfo, ...]
    arming: str
    notes: tuple[str, ...]
    max_region_length: int
    version: str = "0.1.0"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    machine: str = "sim"
    lease_seconds: float = 15.0
    hit_buffer: int = 4096
    #: Delivered events kept for replay after a reconnect.
    replay_retention: int = 65536
    halt_timeout_seconds: float = 30.0
    max_name_length: int = 128
    extra_mechanisms: tuple[MechanismInfo, ...] = field(default=())


class Broker:
    """Owns arbitration, sessions and the mechanism. Every method runs on the event loop.

    Errors are ``hwbkptd.core.errors`` exceptions; a call that raises changes nothing.
    """

    def __init__(
        self,
        *,
        arch: Arch,
        pools: Mapping[str, int],
        mechanism: Mechanism,
        config: BrokerConfig,
    ) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Start the mechanism and the lease/halt-timeout timers."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Remove every request, resume halted threads, detach, end every event stream."""
        raise NotImplementedError

    # --- sessions ---------------------------------------------------------------
    def open_session(
        self, name: str, *, lease_seconds: float = 0, hit_buffer: int = 0, identity: Identity
    ) -> SessionInfo:
        raise NotImplementedError

    def resume_session(self, token: str) -> SessionInfo:
        raise NotImplementedError

    async def close_session(self, token: str) -> None:
        raise NotImplementedError

    def events(self, token: str, after_seq: int = 0) -> AsyncIterator[Sequence[Event]]:
        """Batches of events numbered above ``after_seq``; a newer stream ends an older one."""
        raise NotImplementedError

    # --- requests ---------------------------------------------------------------
    async def set_breakpoint(self, token: str, spec: BreakpointSpec) -> BreakpointView:
        raise NotImplementedError

    async def modify_breakpoint(
        self,
        token: str,
        breakpoint_id: int,
        *,
        priority: int | None = None,
        action: Action | None = None,
        filter: Filter | None = None,
    ) -> BreakpointView:
        raise NotImplementedError

    async def remove_breakpoint(self, token: str, breakpoint_id: int) -> None:
        raise NotImplementedError

    def list_breakpoints(self, token: str) -> tuple[BreakpointView, ...]:
        raise NotImplementedError

    async def resume_threads(self, token: str, tids: Sequence[int]) -> tuple[int, ...]:
        raise NotImplementedError

    # --- processes (native mechanisms; the sim answers FAILED_PRECONDITION) -----
    async def attach_process(self, token: str, pid: int, *, follow_fork: bool = False) -> tuple[int, ...]:
        raise NotImplementedError

    # --- public views -----------------------------------------------------------
    def describe(self) -> MachineDescription:
        raise NotImplementedError

    def slot_map(self, pid: int = 0) -> SlotMapView:
        raise NotImplementedError

    def attribute(self, hit: HitReport) -> tuple[int, ...]:
        """Request ids that held the hit's slot under the hit's generation."""
        raise NotImplementedError

    # --- MechanismSink ----------------------------------------------------------
    def on_hits(self, hits: Sequence[HitReport]) -> None:
        raise NotImplementedError

    def on_hits_lost(self, tid: int, count: int) -> None:
        raise NotImplementedError

    def on_thread_started(self, pid: int, tid: int) -> None:
        raise NotImplementedError

    def on_thread_exited(self, pid: int, tid: int, exit_code: int) -> None:
        raise NotImplementedError

    def on_process_exited(self, pid: int, exit_code: int) -> None:
        raise NotImplementedError

    def on_process_exec(self, pid: int) -> None:
        raise NotImplementedError

    def on_refusals(self, refusals: Sequence[Refusal]) -> None:
        raise NotImplementedError
