"""Protobuf messages to domain values and back.

Reading a message is where client input first meets the broker, so every value
the wire allows but the domain does not (enum numbers from a newer or broken
client, unset enums, an empty token) becomes a precise ``BrokerError`` here,
naming the field by its path in the request (``spec.access``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from hwbkpt.v1 import broker_pb2
from hwbkptd.api.convert_names import fill_hit_words, resolution_to_proto
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
from hwbkptd.core.events import (
    Displaced,
    Event,
    HaltTimeout,
    Hit,
    HitsDropped,
    Removed,
    Restored,
    StateChanged,
    TargetExec,
    TargetExited,
)
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
    "access_from_proto",
    "access_to_proto",
    "action_from_proto",
    "breakpoint_to_proto",
    "breakpoints_to_proto",
    "chunk_to_proto",
    "event_to_proto",
    "events_to_proto",
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
_ACCESSES: dict[Access, broker_pb2.Access.ValueType] = {
    Access.EXEC: broker_pb2.ACCESS_EXEC,
    Access.WRITE: broker_pb2.ACCESS_WRITE,
    Access.READ: broker_pb2.ACCESS_READ,
    Access.READ_WRITE: broker_pb2.ACCESS_READ_WRITE,
}
_ACTIONS: dict[Action, broker_pb2.Action.ValueType] = {
    Action.NOTIFY: broker_pb2.ACTION_NOTIFY,
    Action.HALT: broker_pb2.ACTION_HALT,
}
_STATES: dict[RequestState, broker_pb2.BreakpointState.ValueType] = {
    RequestState.INSTALLED: broker_pb2.BREAKPOINT_STATE_INSTALLED,
    RequestState.PARTIAL: broker_pb2.BREAKPOINT_STATE_PARTIAL,
    RequestState.PENDING: broker_pb2.BREAKPOINT_STATE_PENDING,
    RequestState.REMOVED: broker_pb2.BREAKPOINT_STATE_REMOVED,
}
_REASONS: dict[PendingReason, broker_pb2.PendingReason.ValueType] = {
    PendingReason.NONE: broker_pb2.PENDING_REASON_UNSPECIFIED,
    PendingReason.PRIORITY: broker_pb2.PENDING_REASON_PRIORITY,
    PendingReason.EXTERNAL: broker_pb2.PENDING_REASON_EXTERNAL,
    PendingReason.NO_THREADS: broker_pb2.PENDING_REASON_NO_THREADS,
    PendingReason.UNRESOLVED: broker_pb2.PENDING_REASON_UNRESOLVED,
}


def _reverse(table: Mapping[_K, _V]) -> dict[_V, _K]:
    return {v: k for k, v in table.items()}


_SCOPES_IN: dict[int, Scope] = _reverse(_SCOPES)
_ACCESSES_IN: dict[int, Access] = _reverse(_ACCESSES)
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
        raise InvalidArgument(field, f"access is required: one of {_choices(_ACCESSES)}")
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
    return broker_pb2.ACCESS_UNSPECIFIED if access is None else _ACCESSES[access]


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
        access=_ACCESSES[spec.access],
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
        access=_ACCESSES[chunk.access],
    )


def breakpoint_to_proto(view: BreakpointView) -> broker_pb2.Breakpoint:
    return broker_pb2.Breakpoint(
        id=view.id,
        session_name=view.session_name,
        spec=spec_to_proto(view.spec),
        resolution=resolution_to_proto(view.spec.resolved),
        state=_STATES[view.state],
        pending_reason=_REASONS[view.reason],
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
        # The wire carries whole seconds; never round a lease down to nothing.
        lease_seconds=max(1, round(info.lease_seconds)) if info.lease_seconds > 0 else 0,
    )


def session_to_resume_response(info: SessionInfo) -> broker_pb2.ResumeSessionResponse:
    return broker_pb2.ResumeSessionResponse(
        session_id=info.session_id, name=info.name, last_seq=info.last_seq
    )


def _fill_hit(msg: broker_pb2.Hit, hit: Hit) -> None:
    # Field by field into the message in place: about half the cost of building a Hit
    # and copying it in, once per event on the hit path.
    msg.pid = hit.pid
    msg.tid = hit.tid
    msg.cpu = hit.cpu
    msg.ip = hit.ip
    msg.address = hit.address
    access = hit.access
    if access is not None:
        msg.access = _ACCESSES[access]
    msg.value = hit.value
    msg.old_value = hit.old_value
    msg.hit_count = hit.hit_count
    msg.generation = hit.generation
    if hit.halted:
        msg.halted = True
    if hit.ip_symbol:
        msg.ip_symbol = hit.ip_symbol
    if hit.ip_line or hit.address_symbol or hit.member:
        fill_hit_words(msg, hit)
    if hit.value_late:
        msg.value_late = True
    for ip, symbol in hit.call_chain:
        msg.call_chain.add(ip=ip, symbol=symbol)


def _fill_event(msg: broker_pb2.Event, event: Event) -> None:
    msg.seq = event.seq
    time = msg.time
    # Timestamp.FromNanoseconds does the same in Python, slower.
    time.seconds, time.nanos = divmod(event.time_ns, 1_000_000_000)
    msg.breakpoint_id = event.breakpoint_id
    kind = event.kind
    if isinstance(kind, Hit):
        _fill_hit(msg.hit, kind)
    elif isinstance(kind, StateChanged):
        msg.state.CopyFrom(
            broker_pb2.StateChanged(
                state=_STATES[kind.state],
                pending_reason=_REASONS[kind.reason],
                installed_tids=kind.installed_tids,
                pending_tids=kind.pending_tids,
            )
        )
    elif isinstance(kind, Displaced):
        msg.displaced.CopyFrom(
            broker_pb2.Displaced(
                tids=kind.tids,
                by_breakpoint_id=kind.by_breakpoint_id,
                by_session=kind.by_session,
                by_priority=kind.by_priority,
                taken=[chunk_to_proto(c) for c in kind.taken],
            )
        )
    elif isinstance(kind, Restored):
        msg.restored.CopyFrom(broker_pb2.Restored(tids=kind.tids))
    elif isinstance(kind, Removed):
        msg.removed.CopyFrom(broker_pb2.Removed(reason=kind.reason))
    elif isinstance(kind, HitsDropped):
        msg.hits_dropped.CopyFrom(broker_pb2.HitsDropped(count=kind.count))
    elif isinstance(kind, TargetExited):
        msg.target_exited.CopyFrom(
            broker_pb2.TargetExited(pid=kind.pid, tid=kind.tid, exit_code=kind.exit_code)
        )
    elif isinstance(kind, HaltTimeout):
        msg.halt_timeout.CopyFrom(broker_pb2.HaltTimeout(tid=kind.tid, seconds=kind.seconds))
    elif isinstance(kind, TargetExec):
        msg.target_exec.CopyFrom(broker_pb2.TargetExec(pid=kind.pid))
    else:  # pragma: no cover - the union above is exhaustive
        raise TypeError(f"unknown event kind {type(kind).__name__}")


def event_to_proto(event: Event) -> broker_pb2.Event:
    msg = broker_pb2.Event()
    _fill_event(msg, event)
    return msg


def events_to_proto(events: Iterable[Event]) -> broker_pb2.StreamEventsResponse:
    """One stream message with the events, each built in place (no copy per event)."""
    response = broker_pb2.StreamEventsResponse()
    add = response.events.add
    for event in events:
        _fill_event(add(), event)
    return response


def machine_to_proto(desc: MachineDescription) -> broker_pb2.DescribeMachineResponse:
    return broker_pb2.DescribeMachineResponse(
        machine=desc.machine,
        arch=desc.arch,
        pools=[
            broker_pb2.Pool(
                name=name,
                slots=slots,
                accesses=[_ACCESSES[a] for a in desc.pool_accesses.get(name, ())],
            )
            for name, slots in desc.pools.items()
        ],
        mechanisms=[
            broker_pb2.Mechanism(name=m.name, available=m.available, reason=m.reason)
            for m in desc.mechanisms
        ],
        arming=desc.arming,
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
