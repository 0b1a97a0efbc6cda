"""Models <-> protocol buffers, value by value (user arguments are read in ``_args``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from hwbkpt import models as m
from hwbkpt._build import positional_builder
from hwbkpt._wire_names import arming_word, machine_word, mechanism_word, removed_word
from hwbkpt.v1 import broker_pb2 as pb
from hwbkpt.v1 import sim_pb2 as simpb

__all__ = [
    "access_from_pb",
    "access_to_pb",
    "action_to_pb",
    "breakpoint_from_pb",
    "event_from_pb",
    "filter_to_pb",
    "hit_run_from_pb",
    "machine_from_pb",
    "resolution_from_pb",
    "slot_map_from_pages",
    "slot_map_from_pb",
    "spawned_from_pb",
    "spec_to_pb",
    "time_from_pb",
    "touch_from_pb",
]

_ACCESS_TO_PB: dict[m.Access, pb.Access.ValueType] = {
    m.Access.EXEC: pb.ACCESS_EXEC,
    m.Access.WRITE: pb.ACCESS_WRITE,
    m.Access.READ: pb.ACCESS_READ,
    m.Access.READ_WRITE: pb.ACCESS_READ_WRITE,
}
_ACCESS_FROM_PB = {v: k for k, v in _ACCESS_TO_PB.items()}
_SCOPE_TO_PB: dict[m.Scope, pb.Scope.ValueType] = {
    m.Scope.KERNEL: pb.SCOPE_KERNEL,
    m.Scope.PROCESS: pb.SCOPE_PROCESS,
    m.Scope.THREAD: pb.SCOPE_THREAD,
}
_SCOPE_FROM_PB = {v: k for k, v in _SCOPE_TO_PB.items()}
_ACTION_TO_PB: dict[m.Action, pb.Action.ValueType] = {
    m.Action.NOTIFY: pb.ACTION_NOTIFY,
    m.Action.HALT: pb.ACTION_HALT,
}
_ACTION_FROM_PB = {v: k for k, v in _ACTION_TO_PB.items()}
_STATE_FROM_PB: dict[pb.BreakpointState.ValueType, m.BreakpointState] = {
    pb.BREAKPOINT_STATE_UNSPECIFIED: m.BreakpointState.UNSPECIFIED,
    pb.BREAKPOINT_STATE_INSTALLED: m.BreakpointState.INSTALLED,
    pb.BREAKPOINT_STATE_PARTIAL: m.BreakpointState.PARTIAL,
    pb.BREAKPOINT_STATE_PENDING: m.BreakpointState.PENDING,
    pb.BREAKPOINT_STATE_REMOVED: m.BreakpointState.REMOVED,
}
_REASON_FROM_PB: dict[pb.PendingReason.ValueType, m.PendingReason] = {
    pb.PENDING_REASON_UNSPECIFIED: m.PendingReason.NONE,
    pb.PENDING_REASON_PRIORITY: m.PendingReason.PRIORITY,
    pb.PENDING_REASON_EXTERNAL: m.PendingReason.EXTERNAL,
    pb.PENDING_REASON_NO_THREADS: m.PendingReason.NO_THREADS,
    pb.PENDING_REASON_UNRESOLVED: m.PendingReason.UNRESOLVED,
}


# --- to protocol buffers ---------------------------------------------------------------
def access_to_pb(access: m.Access) -> pb.Access.ValueType:
    return _ACCESS_TO_PB[access]


def action_to_pb(action: m.Action) -> pb.Action.ValueType:
    return _ACTION_TO_PB[action]


def filter_to_pb(flt: m.Filter) -> pb.Filter:
    msg = pb.Filter(
        changed_only=flt.changed_only,
        ignore_first=flt.ignore_first,
        stop_after=flt.stop_after,
    )
    if flt.equals is not None:
        msg.equals = flt.equals
    return msg


def spec_to_pb(spec: m.BreakpointSpec) -> pb.BreakpointSpec:
    msg = pb.BreakpointSpec(
        scope=_SCOPE_TO_PB[spec.scope],
        pid=spec.pid,
        tid=spec.tid,
        address=spec.address,
        length=spec.length,
        access=_ACCESS_TO_PB[spec.access],
        action=_ACTION_TO_PB[spec.action],
        filter=filter_to_pb(spec.filter),
        symbol=spec.symbol,
        nonstop=spec.nonstop,
        call_chain=spec.call_chain,
    )
    if spec.priority is not None:
        msg.priority = spec.priority
    return msg


# --- from protocol buffers -------------------------------------------------------------
def access_from_pb(value: pb.Access.ValueType) -> m.Access | None:
    return _ACCESS_FROM_PB.get(value)


def _filter_from_pb(msg: pb.Filter) -> m.Filter:
    return m.Filter(
        changed_only=msg.changed_only,
        equals=msg.equals if msg.HasField("equals") else None,
        ignore_first=msg.ignore_first,
        stop_after=msg.stop_after,
    )


def _spec_from_pb(msg: pb.BreakpointSpec) -> m.BreakpointSpec:
    return m.BreakpointSpec(
        scope=_SCOPE_FROM_PB.get(msg.scope, m.Scope.PROCESS),
        pid=msg.pid,
        tid=msg.tid,
        address=msg.address,
        length=msg.length,
        access=_ACCESS_FROM_PB.get(msg.access, m.Access.WRITE),
        priority=msg.priority if msg.HasField("priority") else None,
        action=_ACTION_FROM_PB.get(msg.action, m.Action.NOTIFY),
        filter=_filter_from_pb(msg.filter),
        symbol=msg.symbol,
        nonstop=msg.nonstop,
        call_chain=msg.call_chain,
    )


def _chunk_from_pb(msg: pb.Chunk) -> m.Chunk:
    return m.Chunk(
        pool=msg.pool, address=msg.address, length=msg.length, access=access_from_pb(msg.access)
    )


def _tids(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def breakpoint_from_pb(msg: pb.Breakpoint) -> m.Breakpoint:
    return m.Breakpoint(
        id=msg.id,
        session_name=msg.session_name,
        spec=_spec_from_pb(msg.spec),
        state=_STATE_FROM_PB.get(msg.state, m.BreakpointState.UNSPECIFIED),
        pending_reason=_REASON_FROM_PB.get(msg.pending_reason, m.PendingReason.NONE),
        installed_tids=_tids(msg.installed_tids),
        pending_tids=_tids(msg.pending_tids),
        chunks=tuple(_chunk_from_pb(c) for c in msg.chunks),
        hit_count=msg.hit_count,
        reported_count=msg.reported_count,
        priority=msg.priority,
        resolution=resolution_from_pb(msg.resolution) if msg.HasField("resolution") else None,
    )


def resolution_from_pb(r: pb.Resolution) -> m.Resolution:
    return m.Resolution(
        location=r.location,
        address=r.address,
        length=r.length,
        symbol=r.symbol,
        module=r.module,
        build_id=r.build_id,
        load_bias=r.load_bias,
        type_name=r.type_name,
        source=r.source,
        members=tuple(m.Member(x.offset, x.size, x.name) for x in r.members),
    )


def _payload_from_pb(msg: pb.Event, kind: str | None) -> m.EventPayload | None:
    if kind == "state":
        s = msg.state
        return m.StateChanged(
            state=_STATE_FROM_PB.get(s.state, m.BreakpointState.UNSPECIFIED),
            pending_reason=_REASON_FROM_PB.get(s.pending_reason, m.PendingReason.NONE),
            installed_tids=_tids(s.installed_tids),
            pending_tids=_tids(s.pending_tids),
        )
    if kind == "hit":
        h = msg.hit
        # Positional, in field order (runs once per hit; keywords cost a third more):
        # pid, tid, cpu, ip, address, access, value, old_value, hit_count, generation,
        # halted, ip_symbol, value_late, call_chain, ip_line, address_symbol, member.
        return _new_hit(
            h.pid,
            h.tid,
            h.cpu,
            h.ip,
            h.address,
            _ACCESS_FROM_PB.get(h.access),
            h.value,
            h.old_value,
            h.hit_count,
            h.generation,
            h.halted,
            h.ip_symbol,
            h.value_late,
            tuple(m.Frame(f.ip, f.symbol) for f in h.call_chain) if h.call_chain else (),
            h.ip_line,
            h.address_symbol,
            h.member,
        )
    if kind == "displaced":
        d = msg.displaced
        return m.Displaced(
            tids=_tids(d.tids),
            by_breakpoint_id=d.by_breakpoint_id,
            by_session=d.by_session,
            by_priority=d.by_priority,
            taken=tuple(_chunk_from_pb(c) for c in d.taken),
        )
    if kind == "restored":
        return m.Restored(tids=_tids(msg.restored.tids))
    if kind == "removed":
        return m.Removed(reason=removed_word(msg.removed.reason))
    if kind == "hits_dropped":
        return m.HitsDropped(count=msg.hits_dropped.count)
    if kind == "target_exited":
        t = msg.target_exited
        return m.TargetExited(pid=t.pid, tid=t.tid, exit_code=t.exit_code)
    if kind == "halt_timeout":
        held = msg.halt_timeout.halted_for
        return m.HaltTimeout(tid=msg.halt_timeout.tid, seconds=held.seconds + held.nanos / 1e9)
    if kind == "target_exec":
        return m.TargetExec(pid=msg.target_exec.pid)
    if kind == "progress":
        p = msg.progress
        return m.Progress(
            operation=_PROGRESS_WORDS.get(p.operation, "unspecified"),
            pid=p.pid,
            module=p.module,
            detail=p.detail,
            done=p.done,
            total=p.total,
            finished=p.finished,
        )
    return None


_PROGRESS_WORDS = {
    pb.PROGRESS_OPERATION_ATTACH: "attach",
    pb.PROGRESS_OPERATION_RESOLVE: "resolve",
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# One Hit and one Event per received hit: built without __init__'s per-field lookups.
_new_hit = positional_builder(m.Hit)
_new_event = positional_builder(m.Event)


def time_from_pb(ts: Timestamp) -> datetime:
    # What Timestamp.ToDatetime(tzinfo=UTC) gives (microseconds, truncated), in a
    # third less time: it runs once per event.
    return _EPOCH + timedelta(0, ts.seconds, ts.nanos // 1000)  # (days, seconds, us)


def event_from_pb(msg: pb.Event, kind: str | None = None) -> m.Event | None:
    """The event, or ``None`` for a kind this client does not know (a newer broker) and
    for a ``HitRun`` (``hit_run_from_pb`` expands it). ``kind``: the message's
    ``WhichOneof("kind")`` when the caller has it already."""
    payload = _payload_from_pb(msg, kind or msg.WhichOneof("kind"))
    if payload is None:
        return None
    return _new_event(msg.seq, time_from_pb(msg.time), msg.breakpoint_id, payload)


def hit_run_from_pb(msg: pb.Event, skip: int = 0) -> list[m.Event]:
    """The hits of a ``HitRun`` event, numbered from its seq, less the first ``skip``."""
    run = msg.hit_run
    h = run.shared
    pid, tid, cpu, ip, address = h.pid, h.tid, h.cpu, h.ip, h.address
    access = _ACCESS_FROM_PB.get(h.access)
    generation, halted, ip_symbol, value_late = h.generation, h.halted, h.ip_symbol, h.value_late
    ip_line, address_symbol = h.ip_line, h.address_symbol
    counts, offsets = list(run.hit_counts), list(run.time_offsets_ns)
    values, width = run.values, run.value_length
    olds, old_width = run.old_values, run.old_value_length
    ts = msg.time
    t0 = ts.seconds * 1_000_000_000 + ts.nanos
    seq, bid = msg.seq, msg.breakpoint_id
    epoch, new_hit, new_event = _EPOCH, _new_hit, _new_event
    out: list[m.Event] = []
    append = out.append
    for i in range(skip, min(len(counts), len(offsets))):
        v, o = i * width, i * old_width
        hit = new_hit(
            pid, tid, cpu, ip, address, access, values[v : v + width], olds[o : o + old_width],
            counts[i], generation, halted, ip_symbol, value_late, (), ip_line,
            address_symbol, "",
        )  # fmt: skip
        # time_from_pb's datetime (microseconds, truncated) of the hit's own time.
        when = epoch + timedelta(0, 0, (t0 + offsets[i]) // 1000)
        append(new_event(seq + i, when, bid, hit))
    return out


def machine_from_pb(msg: pb.DescribeMachineResponse) -> m.MachineInfo:
    return m.MachineInfo(
        machine=msg.layout or machine_word(msg.machine),
        kind=machine_word(msg.machine),
        arch=msg.arch,
        pools=tuple(
            m.Pool(
                name=p.name,
                slots=p.slots,
                accesses=tuple(a for a in map(access_from_pb, p.accesses) if a is not None),
            )
            for p in msg.pools
        ),
        mechanisms=tuple(
            m.Mechanism(name=mechanism_word(x.name), available=x.available, reason=x.reason)
            for x in msg.mechanisms
        ),
        arming=arming_word(msg.arming),
        notes=tuple(msg.notes),
        version=msg.version,
        max_region_length=msg.max_region_length,
        limits=tuple(
            m.Limit(name=x.name, value=x.value, flag=x.flag, description=x.description)
            for x in msg.limits
        ),
    )


def _slot_from_pb(msg: pb.Slot) -> m.Slot:
    return m.Slot(
        pool=msg.pool,
        index=msg.index,
        chunk=_chunk_from_pb(msg.chunk) if msg.HasField("chunk") else None,
        holders=tuple(
            m.Holder(
                breakpoint_id=h.breakpoint_id, session_name=h.session_name, priority=h.priority
            )
            for h in msg.holders
        ),
        external=msg.external,
    )


def slot_map_from_pb(msg: pb.GetSlotMapResponse) -> m.SlotMap:
    return slot_map_from_pages((msg,))


def slot_map_from_pages(pages: Sequence[pb.GetSlotMapResponse]) -> m.SlotMap:
    """The slot map from every page of a GetSlotMap walk, in order."""
    return m.SlotMap(
        threads=tuple(
            m.ThreadSlots(
                pid=t.pid,
                tid=t.tid,
                generation=t.generation,
                slots=tuple(_slot_from_pb(s) for s in t.slots),
                halted=t.halted,
            )
            for msg in pages
            for t in msg.threads
        ),
        waiting=tuple(breakpoint_from_pb(b) for msg in pages for b in msg.waiting),
    )


def slot_update_from_pb(msg: pb.WatchSlotMapResponse) -> m.SlotMapUpdate:
    news = []
    for item in msg.news:
        event = event_from_pb(item.event)
        if event is not None:  # a kind this client does not know yet
            news.append(m.SessionNews(item.session_id, item.session_name, event))
    return m.SlotMapUpdate(
        slot_map=slot_map_from_pb(msg.slot_map),
        hits={h.breakpoint_id: h.hits for h in msg.hits},
        dropped={h.breakpoint_id: h.dropped for h in msg.hits if h.dropped},
        news=tuple(news),
        sessions=tuple((s.session_id, s.session_name) for s in msg.sessions),
        time=time_from_pb(msg.time),
    )


def spawned_from_pb(msg: simpb.SpawnProcessResponse) -> m.SpawnedProcess:
    return m.SpawnedProcess(pid=msg.pid, tids=_tids(msg.tids))


def touch_from_pb(msg: simpb.TouchResponse) -> m.TouchResult:
    return m.TouchResult(breakpoint_ids=tuple(msg.breakpoint_ids), halted=msg.halted)
