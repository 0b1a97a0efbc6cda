"""The values the arbiter hands out: slot tables, request changes and deltas.

They live apart from the engine so the change journal can build them without
an import cycle; ``hwbkptd.core.arbiter`` re-exports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hwbkptd.core.model import Chunk, PendingReason, RequestState

__all__ = ["Delta", "RequestChange", "SlotTable", "TableEntry"]


@dataclass(frozen=True, slots=True)
class TableEntry:
    """One occupied slot: the chunk and the requests sharing it, in rank order."""

    chunk: Chunk
    holders: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SlotTable:
    """The slots of one thread (or of the CPU context, tid 0) at one generation."""

    pid: int
    tid: int
    generation: int
    pools: Mapping[str, tuple[TableEntry | None, ...]]
    #: Slots per pool taken by holders outside the broker (not usable).
    external: Mapping[str, int]


# Not frozen: a thread birth makes one per admitted kernel request, and a frozen
# dataclass's __init__ (object.__setattr__ per field) costs five times as much.
# Treat it as read-only all the same.
@dataclass(slots=True)
class RequestChange:
    """How one request's placement changed in one mutation.

    ``installed`` is the new set of tids where it is installed (kernel requests:
    ``{CPU_CONTEXT}`` plus every traced thread, or empty). ``displaced`` are tids
    it lost while the thread lives on and the request still applies there;
    ``displaced_by`` maps the strongest request newly installed in such a thread
    (the one that took its place) to those tids. ``restored`` are tids it gained
    that already existed before the mutation. ``gained``/``lost`` hold the rest
    (thread birth and death, request creation and removal), so that replaying
    all changes from the empty set gives ``installed`` exactly.

    A new request always gets a change (``old_state`` PENDING, reason NONE).
    A tid lost to slots taken outside the broker is displaced but may name no
    request in ``displaced_by``.

    ``taken`` maps a displaced tid to the request's chunks whose slots another
    chunk holds now. A request is all or nothing, so its other chunks just left
    their slots free; none is named when only outside holders are to blame.
    """

    request_id: int
    old_state: RequestState
    new_state: RequestState
    reason: PendingReason
    installed: frozenset[int]
    pending: frozenset[int]
    displaced: frozenset[int]
    displaced_by: Mapping[int, frozenset[int]]
    restored: frozenset[int]
    gained: frozenset[int]
    lost: frozenset[int]
    taken: Mapping[int, frozenset[Chunk]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delta:
    """The result of one mutation: what changed for requests, and which tables to rewrite."""

    changes: tuple[RequestChange, ...]
    rewrites: tuple[SlotTable, ...]
