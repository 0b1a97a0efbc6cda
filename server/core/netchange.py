"""Net placement changes of one broker transaction, turned into session events.

One client call can take several arbiter mutations before the mechanism
accepts the result: a refused slot (ENOSPC) is marked external and placement
runs again, and the periodic retry of external slots frees them and takes them
back. Reporting every intermediate step would tell a client "installed" and
then "pending" for one call, or "restored" and "displaced" at every retry. So
the changes of a transaction are composed and only the net difference is
reported: displaced where a tid was installed before and is not now, restored
the other way round, a state change where state or reason ends up different
from what the owner was last told.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hwbkptd.core.arbiter import RequestChange
from hwbkptd.core.events import Displaced, EventKind, Removed, Restored, StateChanged
from hwbkptd.core.model import Chunk, PendingReason, RequestState

__all__ = ["EXTERNAL_HOLDER", "Current", "Displacer", "NetChanges"]

#: Who displaced a request when slots were taken outside the broker.
EXTERNAL_HOLDER = "external"


@dataclass(frozen=True, slots=True)
class Displacer:
    breakpoint_id: int
    session_name: str
    priority: int


@dataclass(frozen=True, slots=True)
class Current:
    """A request's placement after the transaction, and what its owner was last told."""

    installed: frozenset[int]
    state: RequestState
    reason: PendingReason
    installed_tids: tuple[int, ...]
    pending_tids: tuple[int, ...]
    told: tuple[RequestState, PendingReason] | None


@dataclass(slots=True)
class _Net:
    before: frozenset[int]
    created: bool = False
    removed: str | None = None
    displaced: set[int] = field(default_factory=set)
    displaced_by: dict[int, Displacer] = field(default_factory=dict)
    #: tid -> the request's chunks whose slots another chunk took there.
    taken: dict[int, frozenset[Chunk]] = field(default_factory=dict)
    restored: set[int] = field(default_factory=set)
    before_removal: list[EventKind] = field(default_factory=list)


class NetChanges:
    def __init__(self) -> None:
        self._net: dict[int, _Net] = {}

    def __bool__(self) -> bool:
        return bool(self._net)

    def __contains__(self, request_id: int) -> bool:
        return request_id in self._net

    def _entry(self, request_id: int, before: frozenset[int]) -> _Net:
        net = self._net.get(request_id)
        if net is None:
            net = self._net[request_id] = _Net(before=before)
        return net

    def created(self, request_id: int) -> None:
        self._entry(request_id, frozenset()).created = True

    def removed(
        self, request_id: int, before: frozenset[int], reason: str, *first: EventKind
    ) -> None:
        """The request goes; ``first`` are told before ``Removed`` (e.g. ``TargetExited``)."""
        net = self._entry(request_id, before)
        if net.removed is None:
            net.removed = reason
            net.before_removal.extend(first)

    def absorb(
        self,
        change: RequestChange,
        before: frozenset[int],
        displacer: Callable[[int], Displacer],
    ) -> None:
        """Add one arbiter change; ``before`` is the request's installed set before it."""
        net = self._entry(change.request_id, before)
        net.displaced |= change.displaced
        net.restored |= change.restored
        for by, tids in change.displaced_by.items():
            who = displacer(by)
            for tid in tids:
                net.displaced_by[tid] = who
        net.taken.update(change.taken)

    def touched(self) -> dict[int, frozenset[int]]:
        """Requests changed (not created, not removed) so far, with their installed set before."""
        return {
            rid: net.before
            for rid, net in self._net.items()
            if not net.created and net.removed is None
        }

    def drain(self, current: Callable[[int], Current | None]) -> list[tuple[int, list[EventKind]]]:
        """Events per request, in the order requests were first touched; empties the set."""
        out: list[tuple[int, list[EventKind]]] = []
        nets, self._net = self._net, {}
        for request_id, net in nets.items():
            if net.removed is not None:
                out.append((request_id, [*net.before_removal, Removed(reason=net.removed)]))
                continue
            now = current(request_id)
            if now is not None:
                out.append((request_id, _placement_events(net, now)))
        return out


def _placement_events(net: _Net, now: Current) -> list[EventKind]:
    events: list[EventKind] = []
    before, installed = net.before, now.installed
    # Only the few tids marked displaced or restored are looked at, never the whole
    # installed sets (a kernel request's has every thread).
    displaced = sorted(t for t in net.displaced if t in before and t not in installed)
    if displaced:
        groups: dict[Displacer, list[int]] = {}
        for tid in displaced:
            who = net.displaced_by.get(tid, Displacer(0, EXTERNAL_HOLDER, 0))
            groups.setdefault(who, []).append(tid)
        for who, tids in groups.items():
            taken = {c for tid in tids for c in net.taken.get(tid, ())}
            events.append(
                Displaced(
                    tids=tuple(tids),
                    by_breakpoint_id=who.breakpoint_id,
                    by_session=who.session_name,
                    by_priority=who.priority,
                    taken=tuple(sorted(taken, key=Chunk.sort_key)),
                )
            )
    restored = sorted(t for t in net.restored if t in installed and t not in before)
    if restored:
        events.append(Restored(tids=tuple(restored)))
    if net.created or now.told != (now.state, now.reason):
        events.append(
            StateChanged(
                state=now.state,
                reason=now.reason,
                installed_tids=now.installed_tids,
                pending_tids=now.pending_tids,
            )
        )
    return events
