"""The broker's answers: breakpoint views, the slot map and the machine description.

Read-only: built from the rooms after a call's commit, never changing them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Container, Mapping

from hwbkptd.core.arbiter import Arbiter, SlotTable
from hwbkptd.core.arch_port import Arch
from hwbkptd.core.broker_types import (
    BreakpointSpec,
    BreakpointView,
    BrokerConfig,
    MachineDescription,
    SlotMapView,
    SlotView,
    ThreadSlotsView,
)
from hwbkptd.core.hits import HitState
from hwbkptd.core.mechanism import MechanismInfo
from hwbkptd.core.model import CPU_CONTEXT, Access, Chunk, PendingReason, RequestState, Scope

__all__ = [
    "READ_EMULATION_NOTE",
    "breakpoint_view",
    "describe_machine",
    "placement_tids",
    "slot_map",
    "thread_slots",
]

READ_EMULATION_NOTE = (
    "x86 does not tell a read from a write, and has no read-only watchpoint (read watches are "
    "armed read/write). The access of a read or read/write hit comes from the watched value: "
    "changed since the last value the broker saw, it was a write (a read watch drops it); "
    "unchanged, or unknown before, it is 'read or write' (access rw on the hit): a read, or a "
    "store of the same value. A write by another thread before the value is read (non-stop "
    "values are read late) counts as a change too."
)


def placement_tids(
    arbiter: Arbiter, request_id: int, kernel: bool, installed: frozenset[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(installed, pending) tids as the API shows them; kernel requests show none (see state)."""
    if kernel:
        return (), ()
    pending = arbiter.applicable(request_id) - installed
    return tuple(sorted(installed)), tuple(sorted(pending))


def breakpoint_view(
    arbiter: Arbiter,
    request_id: int,
    *,
    session_name: str,
    spec: BreakpointSpec,
    chunks: tuple[Chunk, ...],
    hits: HitState,
    priority: int,
    live: bool,
) -> BreakpointView:
    if live:
        state, reason = arbiter.state(request_id)
        installed, pending = placement_tids(
            arbiter, request_id, spec.scope is Scope.KERNEL, arbiter.installed(request_id)
        )
    else:
        state, reason, installed, pending = RequestState.REMOVED, PendingReason.NONE, (), ()
    return BreakpointView(
        id=request_id,
        session_name=session_name,
        spec=spec,
        state=state,
        reason=reason,
        installed_tids=installed,
        pending_tids=pending,
        chunks=chunks,
        hit_count=hits.hit_count,
        reported_count=hits.reported_count,
        priority=priority,
    )


def thread_slots(
    table: SlotTable,
    pools: Mapping[str, int],
    holder: Callable[[int], tuple[int, str, int]],
    *,
    halted: bool,
    refused: Mapping[str, Container[int]],
) -> ThreadSlotsView:
    """Every slot of a table; free slots held outside the broker are flagged external."""
    slots: list[SlotView] = []
    for pool, size in pools.items():
        entries = table.pools.get(pool, ())
        external = _external_indices(table, pool, size, refused.get(pool, ()))
        for index in range(size):
            entry = entries[index] if index < len(entries) else None
            if entry is None:
                slots.append(SlotView(pool, index, None, (), external=index in external))
            else:
                holders = tuple(holder(rid) for rid in entry.holders)
                slots.append(SlotView(pool, index, entry.chunk, holders))
    return ThreadSlotsView(
        pid=table.pid,
        tid=table.tid,
        generation=table.generation,
        slots=tuple(slots),
        halted=halted,
    )


def _external_indices(
    table: SlotTable, pool: str, size: int, refused: Container[int]
) -> frozenset[int]:
    count = table.external.get(pool, 0)
    if not count:
        return frozenset()
    entries = table.pools.get(pool, ())
    free = [i for i in range(size) if i >= len(entries) or entries[i] is None]
    # The indices the kernel refused are the ones known to be taken; count the rest from the top.
    ordered = [i for i in free if i in refused] + [i for i in reversed(free) if i not in refused]
    return frozenset(ordered[:count])


def describe_machine(
    arch: Arch,
    pools: Mapping[str, int],
    info: MechanismInfo,
    config: BrokerConfig,
    *,
    parts: tuple[MechanismInfo, ...] = (),
    notes: tuple[str, ...] = (),
) -> MachineDescription:
    """``parts`` replace the mechanism's own entry (a composite lists what it is made of)."""
    notes_ = list(notes or info.notes)
    if arch.read_emulated:
        notes_.append(READ_EMULATION_NOTE)
    return MachineDescription(
        machine=config.machine,
        arch=arch.name,
        pools=dict(pools),
        pool_accesses={
            pool: tuple(a for a in Access if arch.pool_for(a) == pool) for pool in pools
        },
        mechanisms=parts or (info, *config.extra_mechanisms),
        arming=info.arming,
        notes=tuple(notes_),
        max_region_length=arch.max_region_length,
        limits=config.limits.describe(),
    )


def slot_map(
    arbiter: Arbiter,
    pools: Mapping[str, int],
    *,
    pid: int,
    threads: Mapping[int, int],
    tids: Collection[int],
    halted: Container[int],
    refused: Callable[[int], Mapping[str, Container[int]]],
    view: Callable[[int], BreakpointView],
) -> SlotMapView:
    """Every context's slots (the CPU context first while a kernel request exists) and the
    requests not installed everywhere; ``pid`` limits both to one process (0: all)."""
    requests = arbiter.requests()
    contexts = [CPU_CONTEXT] if any(r.is_kernel for r in requests) else []
    contexts += sorted(tids, key=lambda t: (threads[t], t))

    def holder(rid: int) -> tuple[int, str, int]:
        request = arbiter.request(rid)
        return (rid, request.session_name, request.priority)

    shown = tuple(
        thread_slots(arbiter.table(tid), pools, holder, halted=tid in halted, refused=refused(tid))
        for tid in contexts
    )
    waiting = tuple(
        view(r.id)
        for r in requests
        if (not pid or r.pid == pid or r.is_kernel)
        and arbiter.state(r.id)[0] is not RequestState.INSTALLED
    )
    return SlotMapView(threads=shown, waiting=waiting)
