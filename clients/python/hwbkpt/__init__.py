"""hwbkpt: the client of the hwbkpt hardware breakpoint broker (Apache-2.0).

``Client`` (blocking) and ``AsyncClient`` (asyncio) have the same methods; both return the
typed models of :mod:`hwbkpt.models` and raise :class:`HwbkptError` for every failed call.
"""

from __future__ import annotations

from hwbkpt._address import DEFAULT_ADDRESS, default_address
from hwbkpt.aio import AsyncClient, AsyncSession
from hwbkpt.client import Client, Session
from hwbkpt.errors import FieldViolation, HwbkptError, SessionLostError
from hwbkpt.models import (
    PRIORITY_PRESETS,
    Access,
    Action,
    Breakpoint,
    BreakpointSpec,
    BreakpointState,
    Chunk,
    Displaced,
    Event,
    EventKind,
    EventPayload,
    Filter,
    Frame,
    HaltTimeout,
    Hit,
    HitsDropped,
    Holder,
    MachineInfo,
    Mechanism,
    PendingReason,
    Pool,
    Progress,
    Removed,
    Restored,
    Scope,
    SessionNews,
    Slot,
    SlotMap,
    SlotMapUpdate,
    SpawnedProcess,
    StateChanged,
    TargetExec,
    TargetExited,
    ThreadSlots,
    TouchResult,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ADDRESS",
    "PRIORITY_PRESETS",
    "Access",
    "Action",
    "AsyncClient",
    "AsyncSession",
    "Breakpoint",
    "BreakpointSpec",
    "BreakpointState",
    "Chunk",
    "Client",
    "Displaced",
    "Event",
    "EventKind",
    "EventPayload",
    "FieldViolation",
    "Filter",
    "Frame",
    "HaltTimeout",
    "Hit",
    "HitsDropped",
    "Holder",
    "HwbkptError",
    "MachineInfo",
    "Mechanism",
    "PendingReason",
    "Pool",
    "Progress",
    "Removed",
    "Restored",
    "Scope",
    "Session",
    "SessionLostError",
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
    "__version__",
    "default_address",
]
