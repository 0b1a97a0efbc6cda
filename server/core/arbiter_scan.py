"""The arbiter's contexts and their scans: first-fit of one context, and kernel admission.

Contexts whose first-fit inputs are the same (the same user request lists and
the same external slots) get the same placement, so a scan is done once per
*signature*, not once per context: a thousand threads of processes without
user requests are one scan, whatever the number of kernel requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hwbkptd.core.arbiter_index import RequestIndex
from hwbkptd.core.arbiter_types import SlotTable, TableEntry
from hwbkptd.core.model import CPU_CONTEXT, Chunk
from hwbkptd.core.placement import (
    Needs,
    Runner,
    assign_slots,
    join_without_rescan,
    leave_without_rescan,
)

__all__ = [
    "BARE",
    "HISTORY",
    "Alike",
    "Context",
    "Result",
    "Signature",
    "admission_holds",
    "admit",
    "joined",
    "left",
    "scan",
    "signature",
]

#: Generations of tables kept per context for holders_at().
HISTORY = 64


@dataclass(slots=True)
class Alike:
    """What contexts placed alike in one pass share, computed for the first of them.

    Keyed by object ids; each entry keeps its key objects alive, so no id is reused.
    """

    #: (id of a holders map, slots before) -> (that map, slots, table entries) after.
    layouts: dict[
        tuple[int, tuple[tuple[int | None, ...], ...]],
        tuple[object, dict[str, list[int | None]], dict[str, tuple[TableEntry | None, ...]]],
    ] = field(default_factory=dict)
    #: (id of members before, id of members after) -> (both, the requests that moved).
    moved: dict[tuple[int, int], tuple[object, frozenset[int]]] = field(default_factory=dict)

    def moved_between(self, before: frozenset[int], after: frozenset[int]) -> frozenset[int]:
        key = (id(before), id(after))
        found = self.moved.get(key)
        if found is None:
            found = self.moved[key] = ((before, after), before ^ after)
        return found[1]


#: (pid with process requests or 0, tid with thread requests or 0, external slots).
Signature = tuple[int, int, tuple[tuple[str, int], ...]]
#: A context with no user requests and no slots held outside: the CPU context and
#: every thread of a process nobody watches. Its placement depends only on the
#: kernel requests and on which of them are admitted.
BARE: Signature = (0, 0, ())


@dataclass(slots=True, eq=False)
class Context:
    """One thread (or the CPU context) and its current placement."""

    pid: int
    tid: int
    generation: int = 0
    external: dict[str, int] = field(default_factory=dict)
    slots: dict[str, list[int | None]] = field(default_factory=dict)
    members: frozenset[int] = frozenset()
    #: Requests pending here that would fit if the external slots were free.
    extok: frozenset[int] = frozenset()
    #: Kernel requests that do not fit here under the current admitted set.
    kfail: frozenset[int] = frozenset()
    #: chunk id -> holders in rank order (the first one is why the chunk is there).
    holders: dict[int, tuple[int, ...]] = field(default_factory=dict)
    table: SlotTable | None = None
    history: dict[int, SlotTable] = field(default_factory=dict)

    def retable(
        self, chunks: Mapping[int, Chunk], pools: Mapping[str, int], alike: Alike | None = None
    ) -> bool:
        """Give the current holders their slots and a table; True if the table changed.

        A chunk that stays keeps its slot index (no needless rewrite). ``alike`` (for one
        pass) hands contexts with the same holders and the same slots before the same
        slots and entries after, built once.
        """
        holders = self.holders
        key = (id(holders), tuple(tuple(self.slots.get(pool, ())) for pool in pools))
        done = alike.layouts.get(key) if alike is not None else None
        if done is None:
            for pool, size in pools.items():
                mine = [cid for cid in holders if chunks[cid].pool == pool]
                self.slots[pool] = assign_slots(self.slots.get(pool, ()), mine, size)
            entries = {
                pool: tuple(
                    TableEntry(chunks[cid], holders[cid]) if cid is not None else None
                    for cid in slots
                )
                for pool, slots in self.slots.items()
            }
            if alike is not None:
                alike.layouts[key] = (holders, dict(self.slots), entries)
        else:
            _holders, slots, entries = done
            self.slots = dict(slots)
        old = self.table
        changed = old is None or entries != old.pools
        if changed:
            self.generation += 1
        table = SlotTable(self.pid, self.tid, self.generation, entries, dict(self.external))
        if changed:
            self.history[self.generation] = table
            self.history.pop(self.generation - HISTORY, None)
        self.table = table
        return changed


@dataclass(frozen=True, slots=True, eq=False)
class Result:
    """The placement a scan found; shared by every context of one signature (never mutated)."""

    members: frozenset[int]
    holders: dict[int, tuple[int, ...]]
    extok: frozenset[int]
    kfail: frozenset[int]


def signature(ctx: Context, index: RequestIndex) -> Signature:
    ext = tuple(sorted(ctx.external.items())) if ctx.external else ()
    if ctx.tid == CPU_CONTEXT:
        return (0, 0, ext)
    pid = ctx.pid if ctx.pid in index.by_pid else 0
    tid = ctx.tid if ctx.tid in index.by_tid else 0
    return (pid, tid, ext)


def _runner(ctx: Context, index: RequestIndex, pools: Mapping[str, int]) -> Runner:
    ext = ctx.external
    free = {p: n - ext.get(p, 0) for p, n in pools.items()}
    free_without_external = dict(pools) if ext else None
    if ctx.tid == CPU_CONTEXT:
        return Runner([], index.needs, free, free_without_external)
    users = index.users(ctx.pid, ctx.tid)
    sharers = index.sharers(ctx.pid, ctx.tid)
    return Runner(users, index.needs, free, free_without_external, sharers)


def _result(runner: Runner) -> Result:
    members = frozenset(runner.actual.placed)
    extok = frozenset(runner.kext)
    if runner.without_external is not None:
        extok |= frozenset(runner.without_external.placed) - members
    holders = {cid: tuple(held) for cid, held in runner.actual.holders.items()}
    return Result(members, holders, extok, frozenset(runner.kfail))


def scan(ctx: Context, index: RequestIndex, pools: Mapping[str, int], admitted: set[int]) -> Result:
    """First-fit of one context under the current admitted set (verdicts recorded)."""
    runner = _runner(ctx, index, pools)
    for entry in index.kernel:
        runner.advance(entry)
        rid = entry[1]
        if runner.kernel_fits(rid) and rid in admitted:
            runner.admit(rid)
    runner.advance()
    return _result(runner)


def admission_holds(
    done: list[tuple[Context, Result]], admitted: set[int], fails: Mapping[int, int]
) -> bool:
    """Whether new results for some contexts keep the admitted set what admission gives.

    It held before (``fails``: kernel request -> contexts it fails in); only the
    verdicts that move can change that: a kernel request failing somewhere new must
    not be admitted, one failing nowhere any more must be.
    """
    fewer: dict[int, int] = {}
    for ctx, result in done:
        if ctx.kfail is result.kfail:
            continue
        if not (result.kfail - ctx.kfail).isdisjoint(admitted):
            return False
        for rid in ctx.kfail - result.kfail:
            if rid not in admitted:
                fewer[rid] = fewer.get(rid, 0) + 1
    for rid, gone in fewer.items():
        more = sum(1 for ctx, result in done if rid in result.kfail and rid not in ctx.kfail)
        if fails.get(rid, 0) - gone + more <= 0:
            return False
    return True


def admit(
    contexts: Iterable[Context], index: RequestIndex, pools: Mapping[str, int]
) -> tuple[set[int], dict[Signature, tuple[Result, list[Context]]]]:
    """Kernel admission in rank order, one scan per signature in lockstep.

    Returns the admitted set and, per signature, its placement and its contexts.
    """
    groups: dict[Signature, tuple[Runner, list[Context]]] = {}
    for ctx in contexts:
        key = signature(ctx, index)
        group = groups.get(key)
        if group is None:
            groups[key] = (_runner(ctx, index, pools), [ctx])
        else:
            group[1].append(ctx)
    runners = [runner for runner, _ctxs in groups.values()]
    admitted: set[int] = set()
    for entry in index.kernel:
        rid = entry[1]
        fits = True
        for runner in runners:
            runner.advance(entry)
            fits = runner.kernel_fits(rid) and fits
        if fits:
            admitted.add(rid)
            for runner in runners:
                runner.admit(rid)
    placed: dict[Signature, tuple[Result, list[Context]]] = {}
    for key, (runner, ctxs) in groups.items():
        runner.advance()
        placed[key] = (_result(runner), ctxs)
    return admitted, placed


def joined(
    ctx: Context, index: RequestIndex, pools: Mapping[str, int], rid: int
) -> tuple[bool, Result | None]:
    """A new user request placed without a rescan: (False, None) when a rescan is needed.

    Otherwise (True, the new placement), or (True, None) when it does not fit here.
    """
    if ctx.external:
        return False, None  # the scan without the external slots would need redoing
    fits, holders = join_without_rescan(
        ctx.holders, index.entry, index.chunk, pools, rid, index.needs[rid]
    )
    if fits is None:
        return False, None
    if not fits or holders is None:
        return True, None
    return True, Result(ctx.members | {rid}, holders, ctx.extok, ctx.kfail)


def left(ctx: Context, rid: int, need: Needs) -> tuple[bool, Result | None]:
    """A user request dropped without a rescan: (False, None) when a rescan is needed."""
    if ctx.external:
        return False, None
    if rid not in ctx.members:
        return True, None
    holders = leave_without_rescan(ctx.holders, rid, need)
    if holders is None:
        return False, None
    return True, Result(ctx.members - {rid}, holders, ctx.extok, ctx.kfail)
