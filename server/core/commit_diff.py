"""What each owner was last told, and the net events one broker transaction owes it.

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
from hwbkptd.core.events import (
    Displaced,
    EventKind,
    Removed,
    RemovedReason,
    Restored,
    StateChanged,
)
from hwbkptd.core.model import Chunk, PendingReason, RequestState

__all__ = ["EXTERNAL_HOLDER", "Current", "Displacer", "OwnerDiff"]

#: Who displaced a request when slots were taken outside the broker.
EXTERNAL_HOLDER = "external"


@dataclass(frozen=True, slots=True)
class Displacer:
    breakpoint_id: int
    session_name: str
    priority: int


@dataclass(frozen=True, slots=True)
class Current:
    """A request's placement after the transaction."""

    state: RequestState
    reason: PendingReason
    installed_tids: tuple[int, ...]
    pending_tids: tuple[int, ...]


@dataclass(slots=True)
class _Net:
    before: frozenset[int]
    created: bool = False
    removed: RemovedReason | None = None
    displaced: set[int] = field(default_factory=set)
    displaced_by: dict[int, Displacer] = field(default_factory=dict)
    #: tid -> the request's chunks whose slots another chunk took there.
    taken: dict[int, frozenset[Chunk]] = field(default_factory=dict)
    restored: set[int] = field(default_factory=set)
    before_removal: list[EventKind] = field(default_factory=list)


class OwnerDiff:
    """Per live request, what its owner knows; per transaction, the net changes since."""

    def __init__(self) -> None:
        self._net: dict[int, _Net] = {}
        #: The installed tids of every live request as of the last absorbed change
        #: (births and deaths that change nothing else are absorbed without a word).
        self._installed: dict[int, frozenset[int]] = {}
        #: The state and reason each owner was last told.
        self._told: dict[int, tuple[RequestState, PendingReason]] = {}

    def __bool__(self) -> bool:
        return bool(self._net)

    def __contains__(self, request_id: int) -> bool:
        return request_id in self._net

    def installed(self, request_id: int) -> frozenset[int]:
        return self._installed.get(request_id, frozenset())

    def _entry(self, request_id: int, before: frozenset[int]) -> _Net:
        net = self._net.get(request_id)
        if net is None:
            net = self._net[request_id] = _Net(before=before)
        return net

    def created(self, request_id: int) -> None:
        self._entry(request_id, frozenset()).created = True
        self._installed[request_id] = frozenset()

    def removed(self, request_id: int, reason: RemovedReason, *first: EventKind) -> None:
        """The request goes; ``first`` are told before ``Removed`` (e.g. ``TargetExited``)."""
        before = self._installed.pop(request_id, frozenset())
        self._told.pop(request_id, None)
        net = self._entry(request_id, before)
        if net.removed is None:
            net.removed = reason
            net.before_removal.extend(first)

    def absorb(self, change: RequestChange, displacer: Callable[[int], Displacer]) -> None:
        """Add one arbiter change of a live request (others are ignored)."""
        rid = change.request_id
        installed = self._installed
        before = installed.get(rid)
        if before is None or change.new_state is RequestState.REMOVED:
            return
        installed[rid] = change.installed
        if (
            not change.displaced
            and not change.restored
            and rid not in self._net
            and self._told.get(rid) == (change.new_state, change.reason)
        ):
            # A thread born or ended, and nothing to tell: a thousand threads
            # times hundreds of kernel requests must not become as many events.
            return
        net = self._entry(rid, before)
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
        """Events per request, in the order requests were first touched; empties the set.

        What a live request's owner is told is recorded as told, events or none.
        """
        out: list[tuple[int, list[EventKind]]] = []
        nets, self._net = self._net, {}
        for request_id, net in nets.items():
            if net.removed is not None:
                out.append((request_id, [*net.before_removal, Removed(reason=net.removed)]))
                continue
            now = current(request_id)
            if now is None:
                continue
            told = self._told.get(request_id)
            self._told[request_id] = (now.state, now.reason)
            installed = self._installed.get(request_id, frozenset())
            out.append((request_id, _placement_events(net, now, installed, told)))
        return out


def _placement_events(
    net: _Net,
    now: Current,
    installed: frozenset[int],
    told: tuple[RequestState, PendingReason] | None,
) -> list[EventKind]:
    events: list[EventKind] = []
    before = net.before
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
    if net.created or told != (now.state, now.reason):
        events.append(
            StateChanged(
                state=now.state,
                reason=now.reason,
                installed_tids=now.installed_tids,
                pending_tids=now.pending_tids,
            )
        )
    return events
