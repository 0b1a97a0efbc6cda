"""The broker's public values: who calls, what they ask for, and what they are shown.

``hwbkptd.core.broker`` re-exports all of them; ``hwbkptd.api`` converts them
to and from protobuf messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hwbkptd.core.limits import LimitInfo, Limits
from hwbkptd.core.mechanism import MechanismInfo
from hwbkptd.core.model import (
    Access,
    Action,
    Chunk,
    Filter,
    PendingReason,
    RequestState,
    Scope,
)
from hwbkptd.core.names import Resolved

__all__ = [
    "BreakpointSpec",
    "BreakpointView",
    "BrokerConfig",
    "Identity",
    "MachineDescription",
    "SessionInfo",
    "SlotMapView",
    "SlotView",
    "ThreadSlotsView",
]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling, and what they may do (DESIGN section 7).

    The defaults are full trust: what the local socket gets without a policy file.
    ``hwbkptd.core.policy`` builds the others from the policy file and holds every
    check that reads these fields.
    """

    name: str = "local"
    may_kernel: bool = True
    max_priority: int = 100
    may_halt: bool = True
    #: Requests one session of this identity may hold at once.
    max_requests: int = 10_000
    may_launch: bool = True
    #: Sessions this identity may have open at once; None: no cap from the policy.
    max_sessions: int | None = None
    #: Every process may be a target; otherwise only those the three lists below match.
    any_target: bool = True
    target_uids: frozenset[int] = frozenset()
    target_pids: frozenset[int] = frozenset()
    #: fnmatch globs over the target's executable path.
    target_exes: tuple[str, ...] = ()
    #: The slot map shows other identities' session names (else they read as hidden).
    sees_session_names: bool = True
    #: May use the simulated machine's SimService.
    may_sim: bool = True
    #: How the caller proved who it is: "local", "loopback", "certificate", "token".
    via: str = field(default="local", compare=False)


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
    filter: Filter = Filter()  # noqa: RUF009 - Filter is a frozen dataclass
    #: A location string (issue 13): resolved by the machine's hooks into ``resolved``.
    symbol: str = ""
    nonstop: bool = False
    call_chain: bool = False
    #: What ``symbol`` named, filled in by validation (None for a request by address).
    resolved: Resolved | None = None


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
    #: Out of the repr, so that no log line or traceback can carry the secret.
    token: str = field(repr=False)
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
    #: Every limit and its value (hwbkptd flags set them).
    limits: tuple[LimitInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    machine: str = "sim"
    lease_seconds: float = 15.0
    hit_buffer: int = 4096
    halt_timeout_seconds: float = 30.0
    #: Names, quotas, buffers, replay and the memory budget (core/limits.py).
    limits: Limits = Limits()  # noqa: RUF009 - Limits is a frozen dataclass
    extra_mechanisms: tuple[MechanismInfo, ...] = field(default=())
    #: Put user hits in words through the machine's Names (issue 13).
    hit_words: bool = True
