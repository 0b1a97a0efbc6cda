"""Placement: who holds which slot in every traced thread (DESIGN section 2).

INTERFACE STUB — the engine helper replaces the bodies; the signatures and the
dataclasses below are the contract the broker codes against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hwbkptd.core.model import CPU_CONTEXT, Chunk, PendingReason, Request, RequestState

__all__ = ["Arbiter", "Delta", "RequestChange", "SlotTable", "TableEntry"]


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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Delta:
    """The result of one mutation: what changed for requests, and which tables to rewrite."""

    changes: tuple[RequestChange, ...]
    rewrites: tuple[SlotTable, ...]


class Arbiter:
    """Incremental placement over a fixed pool layout (pool name -> slot count)."""

    def __init__(self, pools: Mapping[str, int]) -> None:
        raise NotImplementedError

    # --- mutations: each returns the Delta it caused -------------------------
    def add_thread(self, pid: int, tid: int) -> Delta:
        """A traced thread appears; the Delta always rewrites its table (even empty)."""
        raise NotImplementedError

    def remove_thread(self, tid: int) -> Delta:
        raise NotImplementedError

    def add_request(self, request: Request) -> Delta:
        raise NotImplementedError

    def replace_request(self, request: Request) -> Delta:
        """Same id and seq, new priority/action/filter/regions."""
        raise NotImplementedError

    def remove_request(self, request_id: int) -> Delta:
        """The change for the removed request has new_state REMOVED and lost = its old installed."""
        raise NotImplementedError

    def set_external(self, tid: int, pool: str, count: int) -> Delta:
        """``count`` slots of ``pool`` in ``tid`` (CPU_CONTEXT: on the CPUs) are held outside."""
        raise NotImplementedError

    # --- queries -------------------------------------------------------------
    def request(self, request_id: int) -> Request:
        raise NotImplementedError

    def requests(self) -> tuple[Request, ...]:
        raise NotImplementedError

    def state(self, request_id: int) -> tuple[RequestState, PendingReason]:
        raise NotImplementedError

    def installed(self, request_id: int) -> frozenset[int]:
        raise NotImplementedError

    def applicable(self, request_id: int) -> frozenset[int]:
        """Tids the request applies to (kernel: CPU_CONTEXT and every thread)."""
        raise NotImplementedError

    def threads(self) -> Mapping[int, int]:
        """tid -> pid of every traced thread (the CPU context is not included)."""
        raise NotImplementedError

    def table(self, tid: int) -> SlotTable:
        """The current table of a thread, or of the CPU context for ``CPU_CONTEXT``."""
        raise NotImplementedError

    def holders_at(self, tid: int, pool: str, index: int, generation: int) -> tuple[int, ...]:
        """Requests that held the slot under that generation (recent generations are kept)."""
        raise NotImplementedError


_ = CPU_CONTEXT
