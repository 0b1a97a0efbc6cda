"""The commit: from a placement change to armed slots to owner events (the broker's one write path).

Mutations are synchronous arbiter calls, so two client calls never interleave
inside one. Their effects are absorbed here into a set of dirty tables and a
set of net request changes. ``flush`` (under one lock) hands the *current*
table of every dirty thread to the mechanism, marks what the kernel refused as
held outside the broker and places again, and only then tells the owners what
changed. Handing current tables rather than the snapshots inside each delta
means a thread is never given an older generation after a newer one, whatever
order concurrent calls finish in.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

import structlog

from hwbkptd.core import policy
from hwbkptd.core.answers import placement_tids
from hwbkptd.core.arbiter import Arbiter, Delta, SlotTable, TableEntry
from hwbkptd.core.broker_types import BreakpointSpec
from hwbkptd.core.clock import Clock, Timer
from hwbkptd.core.commit_diff import Current, Displacer, OwnerDiff
from hwbkptd.core.errors import BrokerError
from hwbkptd.core.events import EventKind, RemovedReason
from hwbkptd.core.mechanism import Mechanism, Refusal, SlotEntry, SlotWrite
from hwbkptd.core.model import CPU_CONTEXT, Access, Action, Chunk, Scope
from hwbkptd.core.records import RequestBook
from hwbkptd.core.sessions import Session

__all__ = ["EXTERNAL_RETRY_SECONDS", "Commit"]

_log = structlog.get_logger("hwbkptd.broker")

#: How often slots held outside the broker are tried again.
EXTERNAL_RETRY_SECONDS = 2.0
#: Slot entries kept between flushes before the cache starts again.
_SLOT_ENTRIES_KEPT = 4096
# Refusal rounds per flush: each round marks at least one more slot external, so the
# largest pool bounds the count; this is only a guard.
_MAX_ROUNDS = 64


class Commit:
    """Absorbs arbiter deltas; ``flush`` arms the dirty tables and tells owners the net change."""

    def __init__(
        self,
        *,
        arbiter: Arbiter,
        mechanism: Mechanism,
        pools: Mapping[str, int],
        records: RequestBook,
        threads: Mapping[int, int],
        read_value: Callable[[BreakpointSpec], Awaitable[bytes]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        clock: Clock,
        retry_seconds: float = EXTERNAL_RETRY_SECONDS,
    ) -> None:
        self._arbiter = arbiter
        self._mechanism = mechanism
        self._pools = pools
        self._records = records
        self._threads = threads
        self._read_value = read_value
        self._spawn = spawn
        self._clock = clock
        self._retry_seconds = retry_seconds
        #: Sessions of requests removed but not told yet.
        self._leaving: dict[int, Session] = {}
        self._owners = OwnerDiff()
        self._dirty: set[int] = set()
        self._lock = asyncio.Lock()
        self._externals: dict[tuple[int, str], int] = {}
        #: What each occupied slot arms, kept across flushes: a new thread gets the same
        #: slots as its siblings, with holders by the hundred under many kernel requests.
        #: Only an action change alters the entry of the same holders (see rearm).
        self._slot_entries: dict[TableEntry, SlotEntry] = {}
        self._refused: dict[tuple[int, str], set[int]] = {}
        self._retry: Timer | None = None
        self._closed = False

    # --- mutations (synchronous) ------------------------------------------------------
    def created(self, rid: int, delta: Delta) -> None:
        self._owners.created(rid)
        self.absorb(delta)

    def removed(self, rid: int, session: Session, reason: RemovedReason, *first: EventKind) -> None:
        """The request is gone from the records; remove it from placement, tell its owner."""
        self._leaving[rid] = session
        self._owners.removed(rid, reason, *first)
        self.absorb(self._arbiter.remove_request(rid))

    def absorb(self, delta: Delta) -> None:
        owners = self._owners
        for change in delta.changes:
            owners.absorb(change, self._displacer)
        for table in delta.rewrites:
            self._dirty.add(table.tid)

    def rearm(self, rid: int) -> None:
        """Hand the request's tables to the mechanism again (its slot flags changed)."""
        self._slot_entries.clear()
        self._dirty |= self._owners.installed(rid)

    def thread_gone(self, tid: int) -> None:
        for key in [k for k in self._externals if k[0] == tid]:
            del self._externals[key]
        for key in [k for k in self._refused if k[0] == tid]:
            del self._refused[key]
        self._dirty.discard(tid)

    def note_refusals(self, refusals: Sequence[Refusal], writes: Sequence[SlotWrite] = ()) -> bool:
        """Mark refused slots as held outside the broker; True when placement changed.

        The kernel accepted ``occupied - refused`` slots of a pool, so that is all the
        room there is: the rest is taken by someone else. ``occupied`` comes from the
        table that was refused (``writes``), or the current one for late refusals.
        """
        refused = Counter(
            (r.tid, r.pool)
            for r in refusals
            if (r.tid == CPU_CONTEXT or r.tid in self._threads) and r.pool in self._pools
        )
        sent = {w.tid: w for w in writes}
        changed = False
        for r in refusals:
            if (r.tid, r.pool) in refused:
                self._refused.setdefault((r.tid, r.pool), set()).add(r.index)
        for (tid, pool), count in refused.items():
            write = sent.get(tid)
            if write is not None:
                occupied = sum(e is not None for e in write.pools.get(pool, ()))
            else:
                occupied = sum(e is not None for e in self._arbiter.table(tid).pools.get(pool, ()))
            size = self._pools[pool]
            taken = max(self._externals.get((tid, pool), 0), size - max(0, occupied - count))
            taken = min(size, taken)
            if taken == self._externals.get((tid, pool)):
                continue
            self._externals[(tid, pool)] = taken
            _log.info("slots_external", tid=tid, pool=pool, count=taken)
            self.absorb(self._arbiter.set_external(tid, pool, taken))
            changed = True
        return changed

    # --- queries --------------------------------------------------------------------
    def installed(self, rid: int) -> frozenset[int]:
        return self._owners.installed(rid)

    def refused(self, tid: int) -> dict[str, set[int]]:
        """Per pool, the slot indices the kernel refused in a thread (for the slot map)."""
        return {pool: self._refused.get((tid, pool), set()) for pool in self._pools}

    @property
    def externals(self) -> Mapping[tuple[int, str], int]:
        return self._externals

    # --- the flush ------------------------------------------------------------------
    async def flush(self) -> None:
        """Arm every dirty table, settle refusals, then tell owners the net changes."""
        async with self._lock:
            if self._externals and self._dirty:
                # Something changed: a good moment to see whether outside holders left.
                self._clear_externals()
            refreshed: set[int] = set()
            for _ in range(_MAX_ROUNDS):
                if not self._dirty:
                    break
                await self._refresh_values(refreshed)
                writes = self._writes()
                try:
                    refusals = await self._mechanism.apply(writes)
                except (BrokerError, OSError) as err:
                    _log.error("apply_failed", error=str(err), tids=[w.tid for w in writes])
                    break
                self.note_refusals(refusals, writes)
            self._tell()
        self._schedule_retry()

    def close(self) -> None:
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def _writes(self) -> list[SlotWrite]:
        tids = sorted(self._dirty)
        self._dirty.clear()
        if len(self._slot_entries) > _SLOT_ENTRIES_KEPT:
            self._slot_entries.clear()
        cache = self._slot_entries
        # Threads placed alike share their table's entries: build their slots once.
        alike: dict[int, dict[str, tuple[SlotEntry | None, ...]]] = {}
        writes: list[SlotWrite] = []
        for tid in tids:
            if tid != CPU_CONTEXT and tid not in self._threads:
                continue
            table = self._arbiter.table(tid)
            pools = alike.get(id(table.pools))
            if pools is None:
                pools = alike[id(table.pools)] = self._slot_pools(table, cache)
            writes.append(SlotWrite(table.pid, table.tid, table.generation, pools))
        return writes

    def _slot_pools(
        self, table: SlotTable, cache: dict[TableEntry, SlotEntry]
    ) -> dict[str, tuple[SlotEntry | None, ...]]:
        pools: dict[str, tuple[SlotEntry | None, ...]] = {}
        for pool, entries in table.pools.items():
            slots: list[SlotEntry | None] = []
            for entry in entries:
                if entry is None:
                    slots.append(None)
                    continue
                slot = cache.get(entry)
                if slot is None:
                    slot = cache[entry] = self._slot_entry(entry.chunk, entry.holders)
                slots.append(slot)
            pools[pool] = tuple(slots)
        return pools

    def _slot_entry(self, chunk: Chunk, holders: tuple[int, ...]) -> SlotEntry:
        requests = [self._arbiter.request(rid) for rid in holders]
        # One region per holder, in holder order: a hit's values line up with holders_at().
        regions = tuple((r.address, 0 if r.access is Access.EXEC else r.length) for r in requests)
        return SlotEntry(
            chunk=chunk,
            regions=regions,
            halt=any(r.action is Action.HALT for r in requests),
            nonstop=all(r.nonstop for r in requests),
            call_chain=any(r.call_chain for r in requests),
            kernel=any(r.is_kernel for r in requests),
            value_filters=tuple(
                r.filter if r.filter.changed_only or r.filter.equals is not None else None
                for r in requests
            ),
        )

    def _clear_externals(self) -> None:
        externals, self._externals = self._externals, {}
        self._refused.clear()
        for tid, pool in externals:
            if tid == CPU_CONTEXT or tid in self._threads:
                self.absorb(self._arbiter.set_external(tid, pool, 0))

    def _schedule_retry(self) -> None:
        if self._retry is not None or not self._externals or self._closed:
            return
        self._retry = self._clock.call_later(self._retry_seconds, self._retry_externals)

    def _retry_externals(self) -> None:
        self._retry = None
        if self._externals and not self._closed:
            self._clear_externals()
            self._spawn(self.flush())

    async def _refresh_values(self, refreshed: set[int]) -> None:
        """Read the value of requests about to be armed again after having no slot at all.

        Such a request missed what happened meanwhile: its "value before" is what memory
        holds now. Read before arming, never after: an armed thread runs on (a newborn
        is let go by the very write that arms it) and may already have made the access
        whose hit is on its way, whose old value would then be its new one. A request
        armed somewhere all along keeps the last value it saw: it has seen every access
        of the threads it was armed in, and a thread it gains (a newborn) has made none.
        """
        for rid, before in self._owners.touched().items():
            if before or rid in refreshed:
                continue
            record = self._records.get(rid)
            if record is None or record.spec.access is Access.EXEC or not self.installed(rid):
                continue
            refreshed.add(rid)
            record.hits.last_value = await self._read_value(record.spec)

    def _tell(self) -> None:
        for rid, kinds in self._owners.drain(self._current):
            record = self._records.get(rid)
            session = record.session if record is not None else self._leaving.pop(rid, None)
            if session is None:
                continue
            for kind in kinds:
                # Its owner learns it was displaced, and at what priority; whose session
                # did it only if its policy lets it see other sessions' names.
                session.emit(rid, policy.displaced_for(session.identity, kind, self._owner_of))

    def _current(self, rid: int) -> Current | None:
        record = self._records.get(rid)
        if record is None:
            return None
        state, reason = self._arbiter.state(rid)
        installed = self.installed(rid)
        shown, pending = placement_tids(
            self._arbiter, rid, record.request.scope is Scope.KERNEL, installed
        )
        return Current(state, reason, shown, pending)

    def _owner_of(self, rid: int) -> str | None:
        record = self._records.get(rid)
        return record.session.identity.name if record is not None else None

    def _displacer(self, rid: int) -> Displacer:
        request = self._arbiter.request(rid)
        return Displacer(rid, request.session_name, request.priority)
