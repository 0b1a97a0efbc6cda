"""Placement: who holds which slot in every traced thread (DESIGN section 2).

The arbiter is incremental: a mutation recomputes only the contexts (threads,
or the CPU context for kernel requests) it can affect, and adding or removing
a user request that cannot move anyone else (it waits, or only shares a slot)
needs no rescan at all. Kernel admission is kept as per-context verdicts under
the current admitted set; a mutation re-checks them and runs the full lockstep
admission over every context only when the admitted set really changes (then
every table changes anyway), or when a kernel request itself is added,
replaced or removed.

Choices where the contract is silent: a new request always gets a change
(``old_state`` PENDING); a tid lost to outside holders is ``displaced`` with no
request named; ``holders_at`` keeps answering for the last 256 ended threads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hwbkptd.core.arbiter_index import RequestIndex
from hwbkptd.core.arbiter_journal import Journal
from hwbkptd.core.arbiter_types import Delta, RequestChange, SlotTable, TableEntry
from hwbkptd.core.model import CPU_CONTEXT, PendingReason, Request, RequestState, Scope
from hwbkptd.core.placement import (
    Needs,
    Runner,
    assign_slots,
    join_without_rescan,
    leave_without_rescan,
)

__all__ = ["Arbiter", "Delta", "RequestChange", "SlotTable", "TableEntry"]

#: Generations of tables kept per context for holders_at().
HISTORY = 64
#: Ended threads whose history holders_at() still answers for.
DEAD_THREADS_KEPT = 256


@dataclass(slots=True, eq=False)
class _Context:
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


class Arbiter:
    """Incremental placement over a fixed pool layout (pool name -> slot count)."""

    def __init__(self, pools: Mapping[str, int]) -> None:
        if not pools or any(n < 0 for n in pools.values()):
            raise ValueError("pools: need at least one pool and no negative slot count")
        self._pools: dict[str, int] = dict(pools)
        self._index = RequestIndex(self._pools)
        self._threads: dict[int, int] = {}
        self._proc_threads: dict[int, set[int]] = {}
        self._ctx: dict[int, _Context] = {}
        self._inst: dict[int, set[int]] = {}
        self._extok_n: dict[int, int] = {}
        self._kfail_n: dict[int, int] = {}
        self._admitted: set[int] = set()
        self._dead: dict[int, dict[int, SlotTable]] = {}
        self._journal = Journal(self)
        cpu = _Context(pid=0, tid=CPU_CONTEXT, generation=1)
        cpu.slots = {p: [None] * n for p, n in self._pools.items()}
        cpu.table = SlotTable(
            0, CPU_CONTEXT, 1, {p: (None,) * n for p, n in self._pools.items()}, {}
        )
        cpu.history[1] = cpu.table
        self._ctx[CPU_CONTEXT] = cpu

    # --- mutations: each returns the Delta it caused -------------------------
    def add_thread(self, pid: int, tid: int) -> Delta:
        """A traced thread appears; the Delta always rewrites its table (even empty)."""
        if tid <= 0 or tid in self._threads:
            raise ValueError(f"tid: {tid} is not a new thread id")
        jr = self._journal
        jr.born.add(tid)
        jr.touch_all(self._index.applicable(pid, tid))
        self._threads[tid] = pid
        self._proc_threads.setdefault(pid, set()).add(tid)
        self._ctx[tid] = _Context(pid=pid, tid=tid)
        self._dead.pop(tid, None)  # a reused tid starts a new history
        self._recompute((tid,))
        return jr.finish()

    def remove_thread(self, tid: int) -> Delta:
        pid = self._threads[tid]
        ctx = self._ctx[tid]
        jr = self._journal
        jr.touch_all(self._index.applicable(pid, tid))
        for rid in ctx.members:
            self._inst[rid].discard(tid)
        for rid in ctx.extok:
            self._count(self._extok_n, rid, -1)
        for rid in ctx.kfail:
            self._count(self._kfail_n, rid, -1)
        del self._threads[tid], self._ctx[tid]
        # A hit reported just before the thread's exit is still attributed.
        self._dead[tid] = ctx.history
        while len(self._dead) > DEAD_THREADS_KEPT:
            del self._dead[next(iter(self._dead))]
        siblings = self._proc_threads[pid]
        siblings.discard(tid)
        if not siblings:
            del self._proc_threads[pid]
        if self._index.kernel and not self._consistent():
            self._full_pass()
        return jr.finish()

    def add_request(self, request: Request) -> Delta:
        rid = request.id
        if rid in self._index.requests:
            raise ValueError(f"id: request {rid} already exists")
        self._index.validate(request)
        jr = self._journal
        jr.created = rid
        jr.subject = rid
        jr.seed(rid)
        self._index.add(request)
        self._inst[rid] = set()
        self._update_after(request, None)
        return jr.finish()

    def replace_request(self, request: Request) -> Delta:
        """Same id and seq, new priority/action/filter/regions."""
        old = self._index.requests[request.id]
        if request.seq != old.seq:
            raise ValueError("seq: a replaced request keeps its seq")
        self._index.validate(request)
        jr = self._journal
        jr.subject = request.id
        jr.touch(request.id)
        self._index.replace(old, request)
        self._update_after(request, old)
        return jr.finish()

    def remove_request(self, request_id: int) -> Delta:
        """The change for the removed request has new_state REMOVED and lost = its old installed."""
        old = self._index.requests[request_id]
        jr = self._journal
        jr.touch(request_id)
        jr.removed = request_id
        jr.removed_entry = self._index.entry[request_id]
        needs = self._index.remove(old)
        self._update_after(None, old, needs)
        for counts in (self._inst, self._extok_n, self._kfail_n):
            counts.pop(request_id, None)
        return jr.finish()

    def set_external(self, tid: int, pool: str, count: int) -> Delta:
        """``count`` slots of ``pool`` in ``tid`` (CPU_CONTEXT: on the CPUs) are held outside."""
        ctx = self._ctx[tid]
        if pool not in self._pools:
            raise KeyError(pool)
        if not 0 <= count <= self._pools[pool]:
            raise ValueError(f"count: {count} is outside 0..{self._pools[pool]}")
        if count:
            ctx.external[pool] = count
        else:
            ctx.external.pop(pool, None)
        self._recompute((tid,))
        return self._journal.finish()

    # --- queries -------------------------------------------------------------
    def request(self, request_id: int) -> Request:
        return self._index.requests[request_id]

    def requests(self) -> tuple[Request, ...]:
        """Every request, in rank order."""
        return tuple(self._index.in_rank_order())

    def state(self, request_id: int) -> tuple[RequestState, PendingReason]:
        req = self._index.requests[request_id]
        applies = self._napplicable(req)
        if applies == 0:
            return RequestState.PENDING, PendingReason.NO_THREADS
        held = len(self._inst[request_id])
        if held >= applies:
            return RequestState.INSTALLED, PendingReason.NONE
        state = RequestState.PENDING if held == 0 else RequestState.PARTIAL
        if self._extok_n.get(request_id, 0) > 0:
            return state, PendingReason.EXTERNAL
        return state, PendingReason.PRIORITY

    def installed(self, request_id: int) -> frozenset[int]:
        return frozenset(self._inst[request_id])

    def applicable(self, request_id: int) -> frozenset[int]:
        """Tids the request applies to (kernel: CPU_CONTEXT and every thread)."""
        req = self._index.requests[request_id]
        if req.is_kernel:
            return frozenset(self._ctx)
        if req.scope is Scope.THREAD:
            return frozenset((req.tid,)) if req.tid in self._threads else frozenset()
        return frozenset(self._proc_threads.get(req.pid, ()))

    def threads(self) -> Mapping[int, int]:
        """tid -> pid of every traced thread (the CPU context is not included)."""
        return dict(self._threads)

    def table(self, tid: int) -> SlotTable:
        """The current table of a thread, or of the CPU context for ``CPU_CONTEXT``."""
        table = self._ctx[tid].table
        assert table is not None
        return table

    def holders_at(self, tid: int, pool: str, index: int, generation: int) -> tuple[int, ...]:
        """Requests that held the slot under that generation (recent generations are kept)."""
        ctx = self._ctx.get(tid)
        history = ctx.history if ctx is not None else self._dead.get(tid, {})
        table = history.get(generation)
        entries = table.pools.get(pool, ()) if table is not None else ()
        entry = entries[index] if 0 <= index < len(entries) else None
        return entry.holders if entry is not None else ()

    def admitted(self) -> frozenset[int]:
        """Kernel requests currently installed on every CPU and thread."""
        return frozenset(self._admitted)

    # --- bookkeeping ----------------------------------------------------------
    def _contexts_of(self, request: Request) -> Iterable[int]:
        if request.is_kernel:
            return tuple(self._ctx)
        if request.scope is Scope.THREAD:
            return (request.tid,) if request.tid in self._threads else ()
        return tuple(self._proc_threads.get(request.pid, ()))

    def _update_after(
        self, new: Request | None, old: Request | None, old_needs: Needs = ()
    ) -> None:
        """Re-place after a request was added (old None), removed (new None) or replaced."""
        if (new is not None and new.is_kernel) or (old is not None and old.is_kernel):
            self._full_pass()
            return
        if new is not None and old is None:
            slow = [t for t in self._contexts_of(new) if not self._add_fast(self._ctx[t], new.id)]
        elif old is not None and new is None:
            slow = [
                t
                for t in self._contexts_of(old)
                if not self._remove_fast(self._ctx[t], old.id, old_needs)
            ]
        else:
            tids: set[int] = set()
            for req in (new, old):
                if req is not None:
                    tids.update(self._contexts_of(req))
            slow = sorted(tids)
        self._recompute(slow)

    def _napplicable(self, req: Request) -> int:
        if req.is_kernel:
            return len(self._ctx)
        if req.scope is Scope.THREAD:
            return 1 if req.tid in self._threads else 0
        return len(self._proc_threads.get(req.pid, ()))

    @staticmethod
    def _count(counts: dict[int, int], rid: int, delta: int) -> None:
        n = counts.get(rid, 0) + delta
        if n:
            counts[rid] = n
        else:
            counts.pop(rid, None)

    # --- placement -------------------------------------------------------------
    def _runner(self, ctx: _Context) -> Runner:
        index = self._index
        ext = ctx.external
        free = {p: n - ext.get(p, 0) for p, n in self._pools.items()}
        whatif = dict(self._pools) if ext else None
        if ctx.tid == CPU_CONTEXT:
            return Runner([], index.needs, free, whatif)
        users = index.users(ctx.pid, ctx.tid)
        return Runner(users, index.needs, free, whatif, index.sharers(ctx.pid, ctx.tid))

    def _recompute(self, tids: Iterable[int]) -> None:
        """Recompute some contexts under the current admitted set; re-admit if that moved."""
        kernel = self._index.kernel
        admitted = self._admitted
        done: list[tuple[_Context, Runner]] = []
        for tid in tids:
            ctx = self._ctx[tid]
            runner = self._runner(ctx)
            for entry in kernel:
                runner.advance(entry)
                rid = entry[1]
                if runner.judge(rid) and rid in admitted:
                    runner.admit(rid)
            runner.advance()
            done.append((ctx, runner))
        if kernel:
            # Check the new verdicts before applying anything, so that a context is
            # never given an intermediate table (its slot indices must not wander).
            moved: dict[int, int] = {}
            for ctx, runner in done:
                for rid in ctx.kfail.symmetric_difference(runner.kfail):
                    moved[rid] = moved.get(rid, 0) + (1 if rid in runner.kfail else -1)
            if not self._consistent(moved):
                self._full_pass()
                return
        for ctx, runner in done:
            self._apply(ctx, runner)

    def _consistent(self, moved: Mapping[int, int] | None = None) -> bool:
        """Whether the admitted set is still what admission in rank order would give."""
        admitted = self._admitted
        kfail = self._kfail_n
        extra = moved or {}
        for _key, rid in self._index.kernel:
            fails = kfail.get(rid, 0) + extra.get(rid, 0) > 0
            if (rid in admitted) == fails:
                return False
        return True

    def _full_pass(self) -> None:
        """Kernel admission in rank order, every context scanned in lockstep."""
        runners = [(ctx, self._runner(ctx)) for ctx in self._ctx.values()]
        admitted: set[int] = set()
        for entry in self._index.kernel:
            rid = entry[1]
            fits = True
            for _ctx, runner in runners:
                runner.advance(entry)
                fits = runner.judge(rid) and fits
            if fits:
                admitted.add(rid)
                for _ctx, runner in runners:
                    runner.admit(rid)
        self._admitted = admitted
        for ctx, runner in runners:
            runner.advance()
            self._apply(ctx, runner)

    def _add_fast(self, ctx: _Context, rid: int) -> bool:
        """Place a new user request without a rescan; False when a rescan is needed."""
        if ctx.external:
            return False  # the what-if scan for EXTERNAL would need redoing
        index = self._index
        fits, holders = join_without_rescan(
            ctx.holders, index.entry, index.chunk, self._pools, rid, index.needs[rid]
        )
        if fits and holders is not None:
            self._install(ctx, ctx.members | {rid}, holders, ctx.extok, ctx.kfail)
        return fits is not None

    def _remove_fast(self, ctx: _Context, rid: int, need: Needs) -> bool:
        """Drop a user request without a rescan; False when a rescan is needed."""
        if ctx.external:
            return False
        if rid not in ctx.members:
            return True
        holders = leave_without_rescan(ctx.holders, rid, need)
        if holders is None:
            return False
        self._install(ctx, ctx.members - {rid}, holders, ctx.extok, ctx.kfail)
        return True

    def _apply(self, ctx: _Context, runner: Runner) -> None:
        """Install the result of a context scan."""
        members = frozenset(runner.actual.placed)
        extok = frozenset(runner.kext)
        if runner.whatif is not None:
            extok |= frozenset(runner.whatif.placed) - members
        holders = {cid: tuple(held) for cid, held in runner.actual.holders.items()}
        self._install(ctx, members, holders, extok, frozenset(runner.kfail))

    def _install(
        self,
        ctx: _Context,
        members: frozenset[int],
        holders: dict[int, tuple[int, ...]],
        extok: frozenset[int],
        kfail: frozenset[int],
    ) -> None:
        """Make a context's new placement current: counts, journal, slots and table."""
        jr = self._journal
        tid = ctx.tid
        jr.before_members.setdefault(tid, ctx.members)
        moved = ctx.members ^ members
        ext_moved = ctx.extok ^ extok
        jr.touch_all_ids(moved | ext_moved)
        for rid in moved:
            if rid in members:
                self._inst[rid].add(tid)
            else:
                self._inst[rid].discard(tid)
        for rid in ext_moved:
            self._count(self._extok_n, rid, 1 if rid in extok else -1)
        for rid in ctx.kfail ^ kfail:
            self._count(self._kfail_n, rid, 1 if rid in kfail else -1)
        ctx.members, ctx.extok, ctx.kfail, ctx.holders = members, extok, kfail, holders
        chunk = self._index.chunk
        for pool, size in self._pools.items():
            mine = [cid for cid in holders if chunk[cid].pool == pool]
            ctx.slots[pool] = assign_slots(ctx.slots.get(pool, ()), mine, size)
        pools = {
            pool: tuple(
                TableEntry(chunk[cid], holders[cid]) if cid is not None else None for cid in slots
            )
            for pool, slots in ctx.slots.items()
        }
        if ctx.table is None or pools != ctx.table.pools:
            ctx.generation += 1
            jr.rewritten.add(tid)
        table = SlotTable(ctx.pid, tid, ctx.generation, pools, dict(ctx.external))
        if ctx.table is None or ctx.generation != ctx.table.generation:
            ctx.history[ctx.generation] = table
            ctx.history.pop(ctx.generation - HISTORY, None)
        ctx.table = table
