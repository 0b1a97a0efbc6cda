"""The arbiter's change journal: what one mutation did to each request.

Before the arbiter touches anything that can change a request's installed set
or state, it *touches* the request here, which records the old values once.
``finish`` compares them with the new ones and classifies every tid that moved
(displaced, restored, gained, lost) so that the changes replay exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from hwbkptd.core.arbiter_types import Delta, RequestChange
from hwbkptd.core.model import PendingReason, RequestState
from hwbkptd.core.placement import Entry

if TYPE_CHECKING:
    from hwbkptd.core.arbiter import Arbiter

__all__ = ["Journal"]

_Old = tuple[frozenset[int], RequestState, PendingReason]
_EMPTY: frozenset[int] = frozenset()


class Journal:
    """Collects one mutation's effects; ``finish`` turns them into a Delta and resets."""

    def __init__(self, arbiter: Arbiter) -> None:
        self._arb = arbiter
        self._reset()

    def _reset(self) -> None:
        self.old: dict[int, _Old] = {}
        #: Threads created by this mutation (their gains are not restorations).
        self.born: set[int] = set()
        #: Context members before the mutation, for "who took the place".
        self.before_members: dict[int, frozenset[int]] = {}
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

    def touch_all_ids(self, rids: Iterable[int]) -> None:
        old = self.old
        for rid in rids:
            if rid not in old:
                self.touch(rid)

    def seed(self, rid: int) -> None:
        """A request being created: it starts from nothing."""
        self.old[rid] = (_EMPTY, RequestState.PENDING, PendingReason.NONE)

    def finish(self) -> Delta:
        arb = self._arb
        try:
            new_in = {
                tid: arb._ctx[tid].members - before
                for tid, before in self.before_members.items()
                if tid in arb._ctx
            }
            keyed: list[tuple[Entry, RequestChange]] = []
            for rid, old in self.old.items():
                if rid == self.removed:
                    assert self.removed_entry is not None
                    keyed.append((self.removed_entry, self._removal(rid, old)))
                    continue
                change = self._change(rid, old, new_in)
                if change is not None:
                    keyed.append((arb._index.entry[rid], change))
            keyed.sort(key=lambda kc: kc[0])
            rewrites = tuple(arb.table(tid) for tid in sorted(self.rewritten) if tid in arb._ctx)
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
        installed = arb.installed(rid)
        state, reason = arb.state(rid)
        old_installed, old_state, old_reason = old
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
        for tid in old_installed - installed:
            if tid in applies:
                displaced.add(tid)
                taker = self._taker(rid, tid, new_in)
                if taker is not None:
                    by.setdefault(taker, set()).add(tid)
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
            pending=applies - installed,
            displaced=frozenset(displaced),
            displaced_by={taker: frozenset(tids) for taker, tids in by.items()},
            restored=frozenset(restored),
            gained=frozenset(gained),
            lost=frozenset(lost),
        )

    def _taker(self, rid: int, tid: int, new_in: dict[int, frozenset[int]]) -> int | None:
        """The strongest request above ``rid`` that took its place in ``tid``.

        First a request newly installed in that thread; else the request this
        mutation was about, if it holds a slot there (it may have grown); for a
        kernel request, else the strongest request newly installed anywhere (it
        can be held back by another thread). None when only outside holders are
        to blame.
        """
        entry = self._arb._index.entry
        mine = entry[rid]
        best = min((entry[c] for c in new_in.get(tid, ()) if entry[c] < mine), default=None)
        if best is not None:
            return best[1]
        subject = self.subject
        if (
            subject is not None
            and subject != rid
            and subject in entry
            and entry[subject] < mine
            and tid in self._arb._inst[subject]
        ):
            return subject
        if not self._arb.request(rid).is_kernel:
            return None
        anywhere = (entry[c] for news in new_in.values() for c in news if entry[c] < mine)
        best = min(anywhere, default=None)
        return best[1] if best is not None else None
