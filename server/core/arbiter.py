"""Placement: who holds which slot in every traced thread (DESIGN section 2).

The arbiter is incremental: a mutation recomputes only the contexts (threads,
or the CPU context for kernel requests) it can affect, and adding or removing
a user request that cannot move anyone else (it waits, or only shares a slot)
needs no rescan at all. Kernel admission is kept as per-context verdicts under
the current admitted set; a mutation re-checks them and runs the full lockstep
admission over every context only when the admitted set really changes (then
every table changes anyway), or when a kernel request itself is added,
replaced or removed. That pass scans once per distinct context signature
(``arbiter_scan``), not once per thread.

A birth is the new thread's first-fit (none for a thread of an unwatched
process: it gets their shared placement) and a check of its kernel verdicts; a
death can only let pending kernel requests in, so only its verdicts are
checked. A kernel request is installed in every context or none: its installed
set is the one set of all contexts, and only admitted ones gain or lose a tid.

Choices where the contract is silent: a new request always gets a change
(``old_state`` PENDING); a tid lost to outside holders is ``displaced`` with no
request named; ``holders_at`` keeps answering for the last 256 ended threads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from hwbkptd.core.arbiter_contexts import Contexts
from hwbkptd.core.arbiter_index import RequestIndex, count_by
from hwbkptd.core.arbiter_journal import Journal
from hwbkptd.core.arbiter_scan import (
    BARE,
    Alike,
    Context,
    Result,
    Signature,
    admission_holds,
    admit,
    joined,
    left,
    scan,
    signature,
)
from hwbkptd.core.arbiter_types import Delta, RequestChange, SlotTable, TableEntry
from hwbkptd.core.model import CPU_CONTEXT, PendingReason, Request, RequestState
from hwbkptd.core.placement import Entry, Needs

__all__ = ["Arbiter", "Delta", "RequestChange", "SlotTable", "TableEntry"]


class Arbiter:
    """Incremental placement over a fixed pool layout (pool name -> slot count)."""

    def __init__(self, pools: Mapping[str, int]) -> None:
        if not pools or any(n < 0 for n in pools.values()):
            raise ValueError("pools: need at least one pool and no negative slot count")
        self._pools: dict[str, int] = dict(pools)
        self._index = RequestIndex(self._pools)
        self._ctx = Contexts()
        #: Installed tids of the user requests (a kernel request is in all or none).
        self._inst: dict[int, set[int]] = {}
        self._extok_n: dict[int, int] = {}
        #: Kernel request -> contexts it fails in (a Counter: births add in bulk).
        self._kfail_n: Counter[int] = Counter()
        self._admitted: set[int] = set()
        #: The placement of a BARE context under the current kernel requests and
        #: admitted set; only the full pass changes either, and it drops this.
        self._bare: Result | None = None
        self._journal = Journal(self)
        self._ctx[CPU_CONTEXT].retable(
            self._index.chunk, self._pools
        )  # generation 1, every slot free

    # --- mutations: each returns the Delta it caused -------------------------
    def add_thread(self, pid: int, tid: int) -> Delta:
        """A traced thread appears; the Delta always rewrites its table (even empty)."""
        if tid <= 0 or tid in self._ctx:
            raise ValueError(f"tid: {tid} is not a new thread id")
        journal = self._journal
        journal.born.add(tid)
        # A birth changes the state of the thread's user requests and of the admitted kernel
        # requests; pending kernel ones move only in a full pass, which touches them first.
        journal.touch_all(self._index.users_applicable(pid, tid))
        journal.touch_admitted(self._admitted, self.contexts())
        self._ctx.add(pid, tid)
        self._recompute((tid,))
        return journal.finish()

    def remove_thread(self, tid: int) -> Delta:
        ctx = self._ctx[tid]
        if not self._ctx.is_thread(tid):
            raise KeyError(tid)
        pid = ctx.pid
        journal = self._journal
        journal.died.add(tid)
        journal.touch_all(self._index.users_applicable(pid, tid))
        journal.touch_admitted(self._admitted, self.contexts())
        journal.touch_all_ids(ctx.extok)  # their reason may lose its EXTERNAL
        inst = self._inst
        for rid in inst.keys() & ctx.members:
            inst[rid].discard(tid)
        for rid in ctx.extok:
            count_by(self._extok_n, rid, -1)
        for rid in ctx.kfail:
            count_by(self._kfail_n, rid, -1)
        self._ctx.remove(tid)  # keeps its history: a late hit is still attributed
        # Admission changes only if a kernel request failed nowhere else but here.
        kfail = self._kfail_n
        admitted = self._admitted
        if any(rid not in admitted and rid not in kfail for rid in ctx.kfail):
            self._full_pass()
        return journal.finish()

    def add_request(self, request: Request) -> Delta:
        rid = request.id
        if rid in self._index.requests:
            raise ValueError(f"id: request {rid} already exists")
        self._index.validate(request)
        journal = self._journal
        journal.created = rid
        journal.subject = rid
        journal.seed(rid)
        self._index.add(request)
        if not request.is_kernel:
            self._inst[rid] = set()
        self._update_after(request, None)
        return journal.finish()

    def replace_request(self, request: Request) -> Delta:
        """Same id and seq, new priority/action/filter/regions."""
        old = self._index.requests[request.id]
        if request.seq != old.seq:
            raise ValueError("seq: a replaced request keeps its seq")
        if request.scope is not old.scope:
            raise ValueError("scope: a replaced request keeps its scope")
        self._index.validate(request)
        journal = self._journal
        journal.subject = request.id
        journal.touch(request.id)
        self._index.replace(old, request)
        self._update_after(request, old)
        return journal.finish()

    def remove_request(self, request_id: int) -> Delta:
        """The change for the removed request has new_state REMOVED and lost = its old installed."""
        old = self._index.requests[request_id]
        journal = self._journal
        journal.touch(request_id)
        journal.removed = request_id
        journal.removed_entry = self._index.entry[request_id]
        needs = self._index.remove(old)
        self._update_after(None, old, needs)
        for counts in (self._inst, self._extok_n, self._kfail_n):
            counts.pop(request_id, None)
        return journal.finish()

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
        if req.is_kernel:
            # The CPU context is always there, and a kernel request is all or nothing.
            if request_id in self._admitted:
                return RequestState.INSTALLED, PendingReason.NONE
            state = RequestState.PENDING
        else:
            applies = self._ctx.count_of(req)
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
        held = self._inst.get(request_id)
        if held is not None:
            return frozenset(held)
        return self.contexts() if request_id in self._admitted else frozenset()

    def applicable(self, request_id: int) -> frozenset[int]:
        """Tids the request applies to (kernel: CPU_CONTEXT and every thread)."""
        req = self._index.requests[request_id]
        if req.is_kernel:
            return self.contexts()
        return frozenset(self._ctx.of_request(req))

    def contexts(self) -> frozenset[int]:
        """CPU_CONTEXT and every traced thread (one shared set until the next birth or death)."""
        return self._ctx.all()

    def kernel_ranks(self) -> Sequence[Entry]:
        """The kernel requests' rank entries, in rank order (do not change it)."""
        return self._index.kernel

    def is_installed_in(self, request_id: int, tid: int) -> bool:
        """Whether the request is installed in that context."""
        held = self._inst.get(request_id)
        if held is not None:
            return tid in held
        return request_id in self._admitted and tid in self._ctx

    def members(self, tid: int) -> frozenset[int]:
        """Requests installed in one context."""
        return self._ctx[tid].members

    def rank(self, request_id: int) -> Entry:
        """The request's place in rank order (sorts strongest first)."""
        return self._index.entry[request_id]

    def threads(self) -> Mapping[int, int]:
        """tid -> pid of every traced thread (the CPU context is not included)."""
        return self._ctx.threads()

    def table(self, tid: int) -> SlotTable:
        """The current table of a thread, or of the CPU context for ``CPU_CONTEXT``."""
        table = self._ctx[tid].table
        assert table is not None
        return table

    def holders_at(self, tid: int, pool: str, index: int, generation: int) -> tuple[int, ...]:
        """Requests that held the slot under that generation (recent generations are kept)."""
        table = self._ctx.history(tid).get(generation)
        entries = table.pools.get(pool, ()) if table is not None else ()
        entry = entries[index] if 0 <= index < len(entries) else None
        return entry.holders if entry is not None else ()

    def admitted(self) -> frozenset[int]:
        """Kernel requests currently installed on every CPU and thread."""
        return frozenset(self._admitted)

    # --- bookkeeping ----------------------------------------------------------
    def _update_after(
        self, new: Request | None, old: Request | None, old_needs: Needs = ()
    ) -> None:
        """Re-place after a request was added (old None), removed (new None) or replaced."""
        if (new is not None and new.is_kernel) or (old is not None and old.is_kernel):
            self._full_pass()
            return
        index, pools = self._index, self._pools
        if new is not None and old is None:
            rid = new.id
            slow = self._place_without_rescan(
                self._ctx.of_request(new), lambda ctx: joined(ctx, index, pools, rid)
            )
        elif old is not None and new is None:
            rid = old.id
            slow = self._place_without_rescan(
                self._ctx.of_request(old), lambda ctx: left(ctx, rid, old_needs)
            )
        else:
            tids: set[int] = set()
            for req in (new, old):
                if req is not None:
                    tids.update(self._ctx.of_request(req))
            slow = sorted(tids)
        self._recompute(slow)

    # --- placement -------------------------------------------------------------
    def _scan(self, ctx: Context, key: Signature) -> Result:
        if key == BARE and self._bare is not None:
            return self._bare
        result = scan(ctx, self._index, self._pools, self._admitted)
        if key == BARE:
            self._bare = result
        return result

    def _recompute(self, tids: Iterable[int]) -> None:
        """Recompute some contexts under the current admitted set; re-admit if that moved."""
        done: list[tuple[Context, Result]] = []
        found: dict[Signature, Result] = {}
        index = self._index
        for tid in tids:
            ctx = self._ctx[tid]
            key = signature(ctx, index)
            result = found.get(key)
            if result is None:
                result = found[key] = self._scan(ctx, key)
            done.append((ctx, result))
        # Check the new verdicts before applying anything, so that a context is
        # never given an intermediate table (its slot indices must not wander).
        if index.kernel and not admission_holds(done, self._admitted, self._kfail_n):
            self._full_pass()
            return
        alike = Alike()
        for ctx, result in done:
            self._install(ctx, result, alike)

    def _full_pass(self) -> None:
        """Kernel admission in rank order over every context (one scan per signature)."""
        # Kernel states are read from the admitted set: record them before it changes.
        self._journal.touch_all(self._index.kernel)
        self._admitted, placed = admit(self._ctx.values(), self._index, self._pools)
        bare = placed.get(BARE)
        self._bare = bare[0] if bare is not None else None
        alike = Alike()
        for result, ctxs in placed.values():
            for ctx in ctxs:
                self._install(ctx, result, alike)

    def _place_without_rescan(
        self, tids: Iterable[int], step: Callable[[Context], tuple[bool, Result | None]]
    ) -> list[int]:
        """Apply a no-rescan step to each context; returns the contexts that need a rescan."""
        slow: list[int] = []
        for tid in tids:
            ctx = self._ctx[tid]
            done, result = step(ctx)
            if not done:
                slow.append(tid)
            elif result is not None:
                self._install(ctx, result)
        return slow

    def _install(self, ctx: Context, result: Result, alike: Alike | None = None) -> None:
        """Make a context's new placement current: counts, journal, slots and table."""
        table = ctx.table
        if (
            table is not None
            and (result.members is ctx.members or result.members == ctx.members)
            and result.holders == ctx.holders
            and result.extok == ctx.extok
            and (result.kfail is ctx.kfail or result.kfail == ctx.kfail)
            and table.external == ctx.external
        ):
            return  # the same placement: same slots, same table
        members, holders, extok, kfail = result.members, result.holders, result.extok, result.kfail
        journal = self._journal
        tid = ctx.tid
        journal.before(tid, ctx.members, ctx.table)
        moved = (alike or Alike()).moved_between(ctx.members, members)
        ext_moved = ctx.extok ^ extok
        journal.touch_all_ids(moved | ext_moved)
        inst = self._inst
        # Kernel requests have no entry: their installed set is the admitted set.
        for rid in inst.keys() & moved:
            if rid in members:
                inst[rid].add(tid)
            else:
                inst[rid].discard(tid)
        for rid in ext_moved:
            count_by(self._extok_n, rid, 1 if rid in extok else -1)
        if kfail is not ctx.kfail:
            counts = self._kfail_n
            counts.update(kfail - ctx.kfail)
            for rid in ctx.kfail - kfail:
                count_by(counts, rid, -1)
        ctx.members, ctx.extok, ctx.kfail, ctx.holders = members, extok, kfail, holders
        if ctx.retable(self._index.chunk, self._pools, alike):
            journal.rewritten.add(tid)
