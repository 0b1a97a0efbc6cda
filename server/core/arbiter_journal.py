"""The arbiter's change journal: what one mutation did to each request.

Before the arbiter touches anything that can change a request's installed set
or state, it *touches* the request here, which records the old values once.
``finish`` compares them with the new ones and classifies every tid that moved
(displaced, restored, gained, lost) so that the changes replay exactly.

A kernel request admitted before and after a mutation is installed in every
context both times: its change is the mutation's births and deaths, found
without comparing two sets of every thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Protocol

from hwbkptd.core.arbiter_types import Delta, RequestChange, SlotTable
from hwbkptd.core.model import Chunk, PendingReason, Request, RequestState
from hwbkptd.core.placement import Entry

__all__ = ["Journal", "Placement"]


class Placement(Protocol):
    """What the journal reads of the placement it records (the arbiter's public queries)."""

    def state(self, request_id: int) -> tuple[RequestState, PendingReason]: ...
    def installed(self, request_id: int) -> frozenset[int]: ...
    def applicable(self, request_id: int) -> frozenset[int]: ...
    def is_installed_in(self, request_id: int, tid: int) -> bool: ...
    def contexts(self) -> frozenset[int]: ...
    def members(self, tid: int) -> frozenset[int]: ...
    def table(self, tid: int) -> SlotTable: ...
    def rank(self, request_id: int) -> Entry: ...
    def request(self, request_id: int) -> Request: ...
    def admitted(self) -> frozenset[int]: ...
    def kernel_ranks(self) -> Sequence[Entry]: ...


_Old = tuple[frozenset[int], RequestState, PendingReason]
_EMPTY: frozenset[int] = frozenset()
_INSTALLED = RequestState.INSTALLED
_NONE = PendingReason.NONE


class Journal:
    """Collects one mutation's effects; ``finish`` turns them into a Delta and resets."""

    def __init__(self, placement: Placement) -> None:
        self._arb = placement
        self._reset()

    def _reset(self) -> None:
        self.old: dict[int, _Old] = {}
        #: Threads created by this mutation (their gains are not restorations).
        self.born: set[int] = set()
        #: Threads ended by this mutation.
        self.died: set[int] = set()
        #: Kernel requests touched as admitted by a birth or death (see touch_admitted).
        self.admitted: list[int] = []
        #: Context members and tables before the mutation, for "who took the place".
        self.before_members: dict[int, frozenset[int]] = {}
        self.before_tables: dict[int, SlotTable | None] = {}
        self.rewritten: set[int] = set()
        self.created: int | None = None
        self.subject: int | None = None
        self.removed: int | None = None
        self.removed_entry: Entry | None = None

    def touch(self, rid: int) -> None:
        if rid not in self.old:
            arb = self._arb
            state, reason = arb.state(rid)
            self.old[rid] = (arb.installed(rid), state, reason)

    def touch_all(self, entries: Iterable[Entry]) -> None:
        for _key, rid in entries:
            self.touch(rid)

    def touch_all_ids(self, rids: frozenset[int] | set[int]) -> None:
        for rid in rids.difference(self.old):
            self.touch(rid)

    def touch_admitted(self, rids: Iterable[int], contexts: frozenset[int]) -> None:
        """The admitted kernel requests before a birth or death: installed in ``contexts``.

        Called before any kernel request is touched in this mutation; they all have
        the same old values, so they are recorded in one go.
        """
        self.admitted.extend(rids)
        self.old.update(dict.fromkeys(self.admitted, (contexts, _INSTALLED, _NONE)))

    def seed(self, rid: int) -> None:
        """A request being created: it starts from nothing."""
        self.old[rid] = (_EMPTY, RequestState.PENDING, PendingReason.NONE)

    def before(self, tid: int, members: frozenset[int], table: SlotTable | None) -> None:
        """A context is about to change: keep what it held first."""
        self.before_members.setdefault(tid, members)
        self.before_tables.setdefault(tid, table)

    def finish(self) -> Delta:
        arb = self._arb
        try:
            alive = arb.contexts()
            # Contexts placed alike share their member sets: one difference per pair.
            pairs: dict[tuple[int, int], frozenset[int]] = {}
            new_in: dict[int, frozenset[int]] = {}
            for tid, before in self.before_members.items():
                if tid in alive:
                    now = arb.members(tid)
                    key = (id(now), id(before))
                    if key not in pairs:
                        pairs[key] = now - before
                    new_in[tid] = pairs[key]
            keyed: list[tuple[Entry, RequestChange]] = []
            stays = self._kernel_stays(keyed)
            for rid, old in self.old.items():
                if rid in stays:
                    continue
                if rid == self.removed:
                    assert self.removed_entry is not None
                    keyed.append((self.removed_entry, self._removal(rid, old)))
                    continue
                change = self._change(rid, old, new_in)
                if change is not None:
                    keyed.append((arb.rank(rid), change))
            keyed.sort(key=itemgetter(0))
            rewrites = tuple(arb.table(tid) for tid in sorted(self.rewritten) if tid in alive)
            return Delta(tuple(change for _entry, change in keyed), rewrites)
        finally:
            self._reset()

    @staticmethod
    def _removal(rid: int, old: _Old) -> RequestChange:
        return RequestChange(
            request_id=rid,
            old_state=old[1],
            new_state=RequestState.REMOVED,
            reason=PendingReason.NONE,
            installed=_EMPTY,
            pending=_EMPTY,
            displaced=_EMPTY,
            displaced_by={},
            restored=_EMPTY,
            gained=_EMPTY,
            lost=old[0],
        )

    def _change(
        self, rid: int, old: _Old, new_in: dict[int, frozenset[int]]
    ) -> RequestChange | None:
        arb = self._arb
        state, reason = arb.state(rid)
        old_installed, old_state, old_reason = old
        installed = arb.installed(rid)
        if (
            rid != self.created
            and installed == old_installed
            and state is old_state
            and reason is old_reason
        ):
            return None
        applies = arb.applicable(rid)
        displaced: set[int] = set()
        lost: set[int] = set()
        by: dict[int, set[int]] = {}
        taken: dict[int, frozenset[Chunk]] = {}
        for tid in old_installed - installed:
            if tid in applies:
                displaced.add(tid)
                taker = self._taker(rid, tid, new_in)
                if taker is not None:
                    by.setdefault(taker, set()).add(tid)
                chunks = self._taken(rid, tid)
                if chunks:
                    taken[tid] = chunks
            else:
                lost.add(tid)
        restored: set[int] = set()
        gained: set[int] = set()
        for tid in installed - old_installed:
            if rid != self.created and tid not in self.born:
                restored.add(tid)
            else:
                gained.add(tid)
        return RequestChange(
            request_id=rid,
            old_state=old_state,
            new_state=state,
            reason=reason,
            installed=installed,
            pending=applies - installed if installed else applies,
            displaced=frozenset(displaced),
            displaced_by={taker: frozenset(tids) for taker, tids in by.items()},
            restored=frozenset(restored),
            gained=frozenset(gained),
            lost=frozenset(lost),
            taken=taken,
        )

    def _kernel_stays(self, keyed: list[tuple[Entry, RequestChange]]) -> frozenset[int]:
        """Kernel requests admitted before a birth or death and after it.

        They are installed in every context both times: each gains the born and
        loses the dead, and nothing else. Returns them; their changes are added to
        ``keyed`` in rank order (so sorting the rest in costs little).
        """
        arb = self._arb
        stays = arb.admitted().intersection(self.admitted)
        if not stays or not (self.born or self.died):
            return stays
        now = arb.contexts()
        gained = frozenset(self.born)
        lost = frozenset(self.died)
        for entry in arb.kernel_ranks():
            rid = entry[1]
            if rid in stays:
                # Positional: this runs once per admitted kernel request per birth.
                change = RequestChange(
                    rid,
                    _INSTALLED,
                    _INSTALLED,
                    _NONE,
                    now,
                    _EMPTY,
                    _EMPTY,
                    {},
                    _EMPTY,
                    gained,
                    lost,
                )
                keyed.append((entry, change))
        return stays

    def _taken(self, rid: int, tid: int) -> frozenset[Chunk]:
        """The request's chunks whose slots in ``tid`` hold another chunk now."""
        old = self.before_tables.get(tid)
        if old is None:
            return frozenset()
        new = self._arb.table(tid)
        taken: set[Chunk] = set()
        for pool, entries in old.pools.items():
            now = new.pools.get(pool, ())
            for i, entry in enumerate(entries):
                if entry is None or rid not in entry.holders:
                    continue
                after = now[i] if i < len(now) else None
                if after is not None and after.chunk != entry.chunk:
                    taken.add(entry.chunk)
        return frozenset(taken)

    def _taker(self, rid: int, tid: int, new_in: dict[int, frozenset[int]]) -> int | None:
        """The strongest request above ``rid`` that took its place in ``tid``.

        First a request newly installed in that thread; else the request this
        mutation was about, if it holds a slot there (it may have grown); for a
        kernel request, else the strongest request newly installed anywhere (it
        can be held back by another thread). None when only outside holders are
        to blame.
        """
        arb = self._arb
        mine = arb.rank(rid)
        best = min(
            (e for e in (arb.rank(c) for c in new_in.get(tid, ())) if e < mine), default=None
        )
        if best is not None:
            return best[1]
        subject = self.subject
        if (
            subject is not None
            and subject != rid
            and subject != self.removed
            and arb.rank(subject) < mine
            and arb.is_installed_in(subject, tid)
        ):
            return subject
        if not arb.request(rid).is_kernel:
            return None
        anywhere = (e for news in new_in.values() for e in (arb.rank(c) for c in news) if e < mine)
        best = min(anywhere, default=None)
        return best[1] if best is not None else None
