"""First-fit placement of one context (a thread or the CPU context): pure functions.

Chunks are interned to small ints by the arbiter so that the inner loops hash
ints, not dataclasses. A request's *need* lists its distinct chunk ids per pool.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

__all__ = [
    "Entry",
    "FirstFit",
    "Needs",
    "Runner",
    "assign_slots",
    "join_without_rescan",
    "leave_without_rescan",
]

#: A request's distinct chunk ids grouped by pool: ((pool, (chunk, ...)), ...).
Needs = tuple[tuple[str, tuple[int, ...]], ...]
#: (rank key, request id): sorts in rank order, the id breaking exact ties.
Entry = tuple[tuple[int, int, int], int]
#: chunk id -> the requests holding it, in rank order.
Holders = dict[int, tuple[int, ...]]


class _Pooled(Protocol):
    @property
    def pool(self) -> str: ...


class FirstFit:
    """The state of a first-fit scan: free slots per pool and who holds each chunk.

    ``place`` is the one fit test: "does it fit" and "put it in" are the same
    count of new chunks per pool against the free slots, so they never disagree.
    """

    __slots__ = ("free", "holders", "placed")

    def __init__(self, free: dict[str, int], holders: dict[int, list[int]] | None = None) -> None:
        self.free = free
        self.holders: dict[int, list[int]] = {} if holders is None else holders
        self.placed: list[int] = []

    def place(self, need: Needs, rid: int | None) -> bool:
        """Whether ``need`` fits; when it does and ``rid`` is given, put ``rid`` in."""
        holders = self.holders
        free = self.free
        for pool, chunks in need:
            new = 0
            for chunk in chunks:
                if chunk not in holders:
                    new += 1
            if new and new > free[pool]:
                return False
        if rid is None:
            return True
        for pool, chunks in need:
            for chunk in chunks:
                held = holders.get(chunk)
                if held is None:
                    holders[chunk] = [rid]
                    free[pool] -= 1
                else:
                    held.append(rid)
        self.placed.append(rid)
        return True

    def fits(self, need: Needs) -> bool:
        return self.place(need, None)


class Runner:
    """First-fit over one context's user entries, with kernel requests interleaved.

    ``without_external`` runs the same scan with the context's external slots
    given back: it tells whether a pending request is held back by outside
    holders. Kernel verdicts are recorded in ``kfail`` (does not fit here) and
    ``kext`` (does not fit, but would without the external slots).

    Once every pool is full only requests whose chunks are all present can still
    get in, so with ``sharers`` (chunk id -> this context's user entries holding
    it) the rest of the scan visits just those instead of every entry.
    """

    __slots__ = (
        "actual",
        "i",
        "kext",
        "kfail",
        "needs",
        "next",
        "sharers",
        "tail",
        "users",
        "without_external",
    )

    def __init__(
        self,
        users: Iterable[Entry],
        needs: Mapping[int, Needs],
        free: dict[str, int],
        free_without_external: dict[str, int] | None,
        sharers: Callable[[int], Iterable[Entry]] | None = None,
    ) -> None:
        self.users = iter(users)
        #: The next user entry not yet offered (None at the end).
        self.next = next(self.users, None)
        self.i = 0
        self.needs = needs
        self.actual = FirstFit(free)
        self.without_external = (
            FirstFit(free_without_external) if free_without_external is not None else None
        )
        self.kfail: set[int] = set()
        self.kext: set[int] = set()
        self.sharers = sharers if free_without_external is None else None
        #: After the pools fill up: the remaining candidates, in rank order.
        self.tail: list[Entry] | None = None
        if self.sharers is not None and not any(free.values()):
            self.tail = []

    def advance(self, bound: Entry | None = None) -> None:
        """Offer every user entry ranked above ``bound`` (all of them when None)."""
        if self.tail is not None:
            self._advance_full(bound)
            return
        users = self.users
        needs = self.needs
        place = self.actual.place
        free = self.actual.free
        other = self.without_external
        watch_full = self.sharers is not None
        entry = self.next
        while entry is not None:
            if bound is not None and not entry < bound:
                break
            rid = entry[1]
            need = needs[rid]
            if place(need, rid) and watch_full and not any(free.values()):
                self.next = next(users, None)
                self._fill_tail()
                self._advance_full(bound)
                return
            if other is not None:
                other.place(need, rid)
            entry = next(users, None)
        self.next = entry

    def _fill_tail(self) -> None:
        assert self.sharers is not None
        first = self.next
        found: set[Entry] = set()
        if first is not None:
            for cid in self.actual.holders:
                found.update(e for e in self.sharers(cid) if e >= first)
        self.tail = sorted(found)
        self.i = 0

    def _advance_full(self, bound: Entry | None) -> None:
        tail = self.tail
        assert tail is not None
        needs = self.needs
        place = self.actual.place
        i = self.i
        n = len(tail)
        while i < n:
            entry = tail[i]
            if bound is not None and not entry < bound:
                break
            rid = entry[1]
            place(needs[rid], rid)  # every pool is full: only chunks all present fit
            i += 1
        self.i = i

    def kernel_fits(self, rid: int) -> bool:
        """Record and return whether kernel request ``rid`` fits here now."""
        need = self.needs[rid]
        if self.actual.fits(need):
            return True
        self.kfail.add(rid)
        if self.without_external is not None and self.without_external.fits(need):
            self.kext.add(rid)
        return False

    def admit(self, rid: int) -> None:
        need = self.needs[rid]
        self.actual.place(need, rid)
        if self.without_external is not None:
            self.without_external.place(need, rid)


def assign_slots(old: Sequence[int | None], chunks: Sequence[int], size: int) -> list[int | None]:
    """Place ``chunks`` (one pool, in rank order of first use) into ``size`` slots.

    A chunk already in ``old`` keeps its index; new chunks take the lowest free
    index, so a chunk that stays installed is never moved (no needless rewrite).
    """
    wanted = set(chunks)
    slots: list[int | None] = [c if c is not None and c in wanted else None for c in old]
    slots.extend([None] * (size - len(slots)))
    kept = {c for c in slots if c is not None}
    free = (i for i, c in enumerate(slots) if c is None)
    for chunk in chunks:
        if chunk not in kept:
            slots[next(free)] = chunk
    return slots


def join_without_rescan(
    holders: Holders,
    rank: Mapping[int, Entry],
    chunks: Mapping[int, _Pooled],
    capacity: Mapping[str, int],
    rid: int,
    need: Needs,
) -> tuple[bool | None, Holders | None]:
    """Add a request to a placement without rescanning it, when that cannot move anyone.

    The first-fit state just before ``rid`` is the set of chunks whose strongest
    holder ranks above it. If ``rid`` does not fit there, or fits without a new
    slot, nothing ranked below it sees a different state: no other request (and
    no kernel verdict) changes. Returns ``(False, None)`` when it does not fit,
    ``(True, new holders)`` when it joins, ``(None, None)`` when a rescan is needed.
    """
    mine = rank[rid]
    # The state just before rid, as a first-fit scan would have it.
    before = FirstFit(dict(capacity))
    for cid, held in holders.items():
        if rank[held[0]] < mine:
            before.holders[cid] = []
            before.free[chunks[cid].pool] -= 1
    if not before.fits(need):
        return False, None
    if any(cid not in before.holders for _pool, cids in need for cid in cids):
        return None, None
    joined = dict(holders)
    for _pool, cids in need:
        for cid in cids:
            held = joined[cid]
            at = bisect.bisect_left([rank[h] for h in held], mine)
            joined[cid] = (*held[:at], rid, *held[at:])
    return True, joined


def leave_without_rescan(holders: Holders, rid: int, need: Needs) -> Holders | None:
    """Remove an installed request that brought no chunk in (None: rescan instead)."""
    left = dict(holders)
    for _pool, cids in need:
        for cid in cids:
            held = left[cid]
            if held[0] == rid:
                return None  # it brought the chunk in: those below may now fit
            left[cid] = tuple(h for h in held if h != rid)
    return left
