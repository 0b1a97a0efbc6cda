"""First-fit placement of one context (a thread or the CPU context): pure functions.

Chunks are interned to small ints by the arbiter so that the inner loops hash
ints, not dataclasses. A request's *need* lists its distinct chunk ids per pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["Entry", "FirstFit", "Needs", "Runner", "assign_slots"]

#: A request's distinct chunk ids grouped by pool: ((pool, (chunk, ...)), ...).
Needs = tuple[tuple[str, tuple[int, ...]], ...]
#: (rank key, request id): sorts in rank order, the id breaking exact ties.
Entry = tuple[tuple[int, int, int], int]


class FirstFit:
    """The state of a first-fit scan: free slots per pool and who holds each chunk."""

    __slots__ = ("free", "holders", "placed")

    def __init__(self, free: dict[str, int]) -> None:
        self.free = free
        self.holders: dict[int, list[int]] = {}
        self.placed: list[int] = []

    def fits(self, need: Needs) -> bool:
        holders = self.holders
        free = self.free
        for pool, chunks in need:
            new = 0
            for chunk in chunks:
                if chunk not in holders:
                    new += 1
            if new and new > free[pool]:
                return False
        return True

    def add(self, rid: int, need: Needs) -> None:
        holders = self.holders
        for pool, chunks in need:
            for chunk in chunks:
                held = holders.get(chunk)
                if held is None:
                    holders[chunk] = [rid]
                    self.free[pool] -= 1
                else:
                    held.append(rid)
        self.placed.append(rid)

    def offer(self, rid: int, need: Needs) -> bool:
        if self.fits(need):
            self.add(rid, need)
            return True
        return False


class Runner:
    """First-fit over one context's user entries, with kernel requests interleaved.

    ``whatif`` runs the same scan with the context's external slots given back:
    it tells whether a pending request is held back by outside holders.
    Kernel verdicts are recorded in ``kfail`` (does not fit here) and ``kext``
    (does not fit, but would without the external slots).
    """

    __slots__ = ("actual", "i", "kext", "kfail", "needs", "users", "whatif")

    def __init__(
        self,
        users: Sequence[Entry],
        needs: Mapping[int, Needs],
        free: dict[str, int],
        whatif_free: dict[str, int] | None,
    ) -> None:
        self.users = users
        self.i = 0
        self.needs = needs
        self.actual = FirstFit(free)
        self.whatif = FirstFit(whatif_free) if whatif_free is not None else None
        self.kfail: set[int] = set()
        self.kext: set[int] = set()

    def advance(self, bound: Entry | None = None) -> None:
        """Offer every user entry ranked above ``bound`` (all of them when None)."""
        users = self.users
        needs = self.needs
        actual = self.actual
        holders = actual.holders
        free = actual.free
        whatif = self.whatif
        i = self.i
        n = len(users)
        while i < n:
            entry = users[i]
            if bound is not None and not entry < bound:
                break
            rid = entry[1]
            need = needs[rid]
            # FirstFit.fits inlined: this loop is the whole cost of a rescan.
            for pool, chunks in need:
                new = 0
                for chunk in chunks:
                    if chunk not in holders:
                        new += 1
                if new and new > free[pool]:
                    break
            else:
                actual.add(rid, need)
            if whatif is not None:
                whatif.offer(rid, need)
            i += 1
        self.i = i

    def judge(self, rid: int) -> bool:
        """Record and return whether kernel request ``rid`` fits here now."""
        need = self.needs[rid]
        if self.actual.fits(need):
            return True
        self.kfail.add(rid)
        if self.whatif is not None and self.whatif.fits(need):
            self.kext.add(rid)
        return False

    def admit(self, rid: int) -> None:
        need = self.needs[rid]
        self.actual.offer(rid, need)
        if self.whatif is not None:
            self.whatif.offer(rid, need)


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
