"""Protobuf messages to domain values and back.

Reading a message is where client input first meets the broker, so every value
the wire allows but the domain does not (enum numbers from a newer or broken
client, unset enums, an empty token) becomes a precise ``BrokerError`` here,
naming the field by its path in the request (``spec.access``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from google.protobuf.duration_pb2 import Duration

from hwbkpt.v1 import broker_pb2
from hwbkptd.api.convert_names import resolution_to_proto
from hwbkptd.core.broker import (
    BreakpointSpec,
    BreakpointView,
    MachineDescription,
    SessionInfo,
    SlotMapView,
    SlotView,
    ThreadSlotsView,
)
from hwbkptd.core.errors import InvalidArgument, NotFound
from hwbkptd.core.events import RemovedReason
from hwbkptd.core.model import (
    MAX_PRIORITY,
    Access,
    Action,
    Chunk,
    Filter,
    PendingReason,
    RequestState,
    Scope,
)

__all__ = [
    "ACCESS_TO_WIRE",
    "REASON_TO_WIRE",
    "REMOVED_TO_WIRE",
    "STATE_TO_WIRE",
    "access_from_proto",
    "access_to_proto",
    "action_from_proto",
    "breakpoint_to_proto",
    "breakpoints_to_proto",
    "chunk_to_proto",
    "duration_from_proto",
    "duration_to_proto",
    "filter_from_proto",
    "filter_to_proto",
    "machine_to_proto",
    "priority_from_proto",
    "scope_from_proto",
    "session_to_open_response",
    "session_to_resume_response",
    "sim_access_from_proto",
    "slot_map_to_proto",
    "spec_from_proto",
    "spec_to_proto",
    "token_from_proto",
]

_K = TypeVar("_K")
_V = TypeVar("_V")

_SCOPES: dict[Scope, broker_pb2.Scope.ValueType] = {
    Scope.KERNEL: broker_pb2.SCOPE_KERNEL,
    Scope.PROCESS: broker_pb2.SCOPE_PROCESS,
    Scope.THREAD: broker_pb2.SCOPE_THREAD,
}
ACCESS_TO_WIRE: dict[Access, broker_pb2.Access.ValueType] = {
    Access.EXEC: broker_pb2.ACCESS_EXEC,
    Access.WRITE: broker_pb2.ACCESS_WRITE,
    Access.READ: broker_pb2.ACCESS_READ,
    Access.READ_WRITE: broker_pb2.ACCESS_READ_WRITE,
}
_ACTIONS: dict[Action, broker_pb2.Action.ValueType] = {
    Action.NOTIFY: broker_pb2.ACTION_NOTIFY,
    Action.HALT: broker_pb2.ACTION_HALT,
}
STATE_TO_WIRE: dict[RequestState, broker_pb2.BreakpointState.ValueType] = {
    RequestState.INSTALLED: broker_pb2.BREAKPOINT_STATE_INSTALLED,
    RequestState.PARTIAL: broker_pb2.BREAKPOINT_STATE_PARTIAL,
    RequestState.PENDING: broker_pb2.BREAKPOINT_STATE_PENDING,
    RequestState.REMOVED: broker_pb2.BREAKPOINT_STATE_REMOVED,
}
REASON_TO_WIRE: dict[PendingReason, broker_pb2.PendingReason.ValueType] = {
    PendingReason.NONE: broker_pb2.PENDING_REASON_UNSPECIFIED,
    PendingReason.PRIORITY: broker_pb2.PENDING_REASON_PRIORITY,
    PendingReason.EXTERNAL: broker_pb2.PENDING_REASON_EXTERNAL,
    PendingReason.NO_THREADS: broker_pb2.PENDING_REASON_NO_THREADS,
    PendingReason.UNRESOLVED: broker_pb2.PENDING_REASON_UNRESOLVED,
}

# The domain names these fixed sets with strings (events, logs, audit records); the
# wire names them with enums. These tables are the one place the two meet.
REMOVED_TO_WIRE: dict[RemovedReason, broker_pb2.RemovedReason.ValueType] = {
    "client": broker_pb2.REMOVED_REASON_CLIENT,
    "lease": broker_pb2.REMOVED_REASON_LEASE,
    "stop_after": broker_pb2.REMOVED_REASON_STOP_AFTER,
    "target_exited": broker_pb2.REMOVED_REASON_TARGET_EXITED,
    "target_exec": broker_pb2.REMOVED_REASON_TARGET_EXEC,
    "session_closed": broker_pb2.REMOVED_REASON_SESSION_CLOSED,
    "shutdown": broker_pb2.REMOVED_REASON_SHUTDOWN,
    "detached": broker_pb2.REMOVED_REASON_DETACHED,
    "unresolved": broker_pb2.REMOVED_REASON_UNRESOLVED,
    "policy": broker_pb2.REMOVED_REASON_POLICY,
}
_MACHINE_KINDS: dict[str, broker_pb2.MachineKind.ValueType] = {
    "sim": broker_pb2.MACHINE_KIND_SIM,
    "native": broker_pb2.MACHINE_KIND_NATIVE,
}
_ARMINGS: dict[str, broker_pb2.Arming.ValueType] = {
    "perf": broker_pb2.ARMING_PERF,
    "debugreg": broker_pb2.ARMING_DEBUGREG,
    "simulated": broker_pb2.ARMING_SIMULATED,
}
_MECHANISMS: dict[str, broker_pb2.MechanismName.ValueType] = {
    "ptrace": broker_pb2.MECHANISM_NAME_PTRACE,
    "perf-kernel": broker_pb2.MECHANISM_NAME_PERF_KERNEL,
    "perf-nonstop": broker_pb2.MECHANISM_NAME_PERF_NONSTOP,
    "bpf": broker_pb2.MECHANISM_NAME_BPF,
    "sim": broker_pb2.MECHANISM_NAME_SIM,
    "native": broker_pb2.MECHANISM_NAME_NATIVE,
}


def _reverse(table: Mapping[_K, _V]) -> dict[_V, _K]:
    return {v: k for k, v in table.items()}


_SCOPES_IN: dict[int, Scope] = _reverse(_SCOPES)
_ACCESSES_IN: dict[int, Access] = _reverse(ACCESS_TO_WIRE)
_ACTIONS_IN: dict[int, Action] = _reverse(_ACTIONS)

_SIM_ACCESSES = (Access.WRITE, Access.READ, Access.EXEC)


def _choices(table: Mapping[_K, _V]) -> str:
    return ", ".join(str(getattr(k, "value", k)) for k in table)


# --- proto -> domain ------------------------------------------------------------


def token_from_proto(token: str, field: str = "token") -> str:
    """An empty token can never name a session; say so before the broker looks."""
    if not token:
        raise NotFound(field, "no session: the token is empty")
    return token


def scope_from_proto(value: int, field: str = "spec.scope") -> Scope:
    if value == broker_pb2.SCOPE_UNSPECIFIED:
        raise InvalidArgument(field, f"scope is required: one of {_choices(_SCOPES)}")
    try:
        return _SCOPES_IN[value]
    except KeyError:
        raise InvalidArgument(field, f"unknown scope {value}") from None


def access_from_proto(value: int, field: str = "spec.access") -> Access:
    if value == broker_pb2.ACCESS_UNSPECIFIED:
        raise InvalidArgument(field, f"access is required: one of {_choices(ACCESS_TO_WIRE)}")
    try:
        return _ACCESSES_IN[value]
    except KeyError:
        raise InvalidArgument(field, f"unknown access {value}") from None


def sim_access_from_proto(value: int, field: str = "access") -> Access:
    """A simulated access is one concrete kind: a write, a read or an instruction fetch."""
    access = access_from_proto(value, field)
    if access not in _SIM_ACCESSES:
        raise InvalidArgument(field, "an access is a write, a read or an exec, not both")
    return access


def action_from_proto(value: int, field: str, *, unset: Action | None) -> Action | None:
    """``ACTION_UNSPECIFIED`` means ``unset`` (NOTIFY for a new request, unchanged on modify)."""
    if value == broker_pb2.ACTION_UNSPECIFIED:
        return unset
    try:
        return _ACTIONS_IN[value]
    except KeyError:
        raise InvalidArgument(field, f"unknown action {value}") from None


def duration_from_proto(msg: Duration, field: str) -> float:
    """Seconds; a negative or malformed Duration (nanos out of range or of the other
    sign) is refused rather than read as something the client did not mean."""
    seconds, nanos = msg.seconds, msg.nanos
    if not -999_999_999 <= nanos <= 999_999_999 or (seconds > 0 > nanos or seconds < 0 < nanos):
        raise InvalidArgument(field, f"malformed duration ({seconds} s, {nanos} ns)")
    if seconds < 0 or nanos < 0:
        raise InvalidArgument(field, "a duration must not be negative")
    return seconds + nanos / 1e9


def priority_from_proto(value: int, field: str) -> int:
    if not 0 <= value <= MAX_PRIORITY:
        raise InvalidArgument(field, f"priority {value} is out of range 0..{MAX_PRIORITY}")
    return value


def filter_from_proto(msg: broker_pb2.Filter) -> Filter:
    return Filter(
        changed_only=msg.changed_only,
        equals=msg.equals if msg.HasField("equals") else None,
        ignore_first=msg.ignore_first,
        stop_after=msg.stop_after,
    )


def spec_from_proto(msg: broker_pb2.BreakpointSpec, field: str = "spec") -> BreakpointSpec:
    """The domain spec; checks what the wire permits and the domain cannot name."""
    scope = scope_from_proto(msg.scope, f"{field}.scope")
    access = access_from_proto(msg.access, f"{field}.access")
    action = action_from_proto(msg.action, f"{field}.action", unset=Action.NOTIFY)
    assert action is not None  # unset maps to NOTIFY
    priority = (
        priority_from_proto(msg.priority, f"{field}.priority") if msg.HasField("priority") else None
    )
    return BreakpointSpec(
        scope=scope,
        address=msg.address,
        length=msg.length,
        access=access,
        pid=msg.pid,
        tid=msg.tid,
        priority=priority,
        action=action,
        filter=filter_from_proto(msg.filter),
        symbol=msg.symbol,
        nonstop=msg.nonstop,
        call_chain=msg.call_chain,
    )


# --- domain -> proto ------------------------------------------------------------


def access_to_proto(access: Access | None) -> broker_pb2.Access.ValueType:
    return broker_pb2.ACCESS_UNSPECIFIED if access is None else ACCESS_TO_WIRE[access]


def duration_to_proto(seconds: float) -> Duration:
    msg = Duration()
    msg.FromNanoseconds(round(seconds * 1e9))
    return msg


def filter_to_proto(flt: Filter) -> broker_pb2.Filter:
    msg = broker_pb2.Filter(
        changed_only=flt.changed_only,
        ignore_first=flt.ignore_first,
        stop_after=flt.stop_after,
    )
    if flt.equals is not None:
        msg.equals = flt.equals
    return msg


def spec_to_proto(spec: BreakpointSpec) -> broker_pb2.BreakpointSpec:
    msg = broker_pb2.BreakpointSpec(
        scope=_SCOPES[spec.scope],
        pid=spec.pid,
        tid=spec.tid,
        address=spec.address,
        length=spec.length,
        access=ACCESS_TO_WIRE[spec.access],
        action=_ACTIONS[spec.action],
        filter=filter_to_proto(spec.filter),
        symbol=spec.symbol,
        nonstop=spec.nonstop,
        call_chain=spec.call_chain,
    )
    if spec.priority is not None:
        msg.priority = spec.priority
    return msg


def chunk_to_proto(chunk: Chunk) -> broker_pb2.Chunk:
    return broker_pb2.Chunk(
        pool=chunk.pool,
        address=chunk.address,
        length=chunk.length,
        access=ACCESS_TO_WIRE[chunk.access],
    )


def breakpoint_to_proto(view: BreakpointView) -> broker_pb2.Breakpoint:
    return broker_pb2.Breakpoint(
        id=view.id,
        session_name=view.session_name,
        spec=spec_to_proto(view.spec),
        resolution=resolution_to_proto(view.spec.resolved),
        state=STATE_TO_WIRE[view.state],
        pending_reason=REASON_TO_WIRE[view.reason],
        installed_tids=view.installed_tids,
        pending_tids=view.pending_tids,
        chunks=[chunk_to_proto(c) for c in view.chunks],
        hit_count=view.hit_count,
        reported_count=view.reported_count,
        priority=view.priority,
    )


def breakpoints_to_proto(views: Iterable[BreakpointView]) -> list[broker_pb2.Breakpoint]:
    return [breakpoint_to_proto(v) for v in views]


def session_to_open_response(info: SessionInfo) -> broker_pb2.OpenSessionResponse:
    return broker_pb2.OpenSessionResponse(
        session_id=info.session_id,
        token=info.token,
        lease=duration_to_proto(info.lease_seconds),
    )


def session_to_resume_response(info: SessionInfo) -> broker_pb2.ResumeSessionResponse:
    return broker_pb2.ResumeSessionResponse(
        session_id=info.session_id, name=info.name, last_seq=info.last_seq
    )


def machine_to_proto(desc: MachineDescription) -> broker_pb2.DescribeMachineResponse:
    return broker_pb2.DescribeMachineResponse(
        # "sim:arm64" is a sim; the kind is the layout's first word.
        machine=_MACHINE_KINDS.get(
            desc.machine.split(":", 1)[0], broker_pb2.MACHINE_KIND_UNSPECIFIED
        ),
        layout=desc.machine,
        arch=desc.arch,
        pools=[
            broker_pb2.Pool(
                name=name,
                slots=slots,
                accesses=[ACCESS_TO_WIRE[a] for a in desc.pool_accesses.get(name, ())],
            )
            for name, slots in desc.pools.items()
        ],
        mechanisms=[
            broker_pb2.Mechanism(
                name=_MECHANISMS.get(m.name, broker_pb2.MECHANISM_NAME_UNSPECIFIED),
                available=m.available,
                reason=m.reason,
            )
            for m in desc.mechanisms
        ],
        arming=_ARMINGS.get(desc.arming, broker_pb2.ARMING_UNSPECIFIED),
        notes=desc.notes,
        version=desc.version,
        max_region_length=desc.max_region_length,
    )


def _slot_to_proto(slot: SlotView) -> broker_pb2.Slot:
    msg = broker_pb2.Slot(
        pool=slot.pool,
        index=slot.index,
        holders=[
            broker_pb2.Holder(breakpoint_id=bid, session_name=name, priority=prio)
            for bid, name, prio in slot.holders
        ],
        external=slot.external,
    )
    if slot.chunk is not None:
        msg.chunk.CopyFrom(chunk_to_proto(slot.chunk))
    return msg


def _thread_to_proto(thread: ThreadSlotsView) -> broker_pb2.ThreadSlots:
    return broker_pb2.ThreadSlots(
        pid=thread.pid,
        tid=thread.tid,
        generation=thread.generation,
        slots=[_slot_to_proto(s) for s in thread.slots],
        halted=thread.halted,
    )


def slot_map_to_proto(view: SlotMapView) -> broker_pb2.GetSlotMapResponse:
    return broker_pb2.GetSlotMapResponse(
        threads=[_thread_to_proto(t) for t in view.threads],
        waiting=breakpoints_to_proto(view.waiting),
    )
