"""The contexts placement works in: the CPU context and each traced thread.

One room for "which contexts exist and whose are they": the arbiter's per-thread
placement state (``Context``, which carries the thread's pid), the process ->
threads index a process-scoped request needs, and the slot tables of recently
ended threads, so that a hit reported just before an exit is still attributed.
The tid -> pid fact itself is each context's ``pid``; there is no second map.
The broker feeds births and deaths from ``processes.ProcessTable``, the owner of
which threads exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from hwbkptd.core.arbiter_scan import Context
from hwbkptd.core.arbiter_types import SlotTable
from hwbkptd.core.model import CPU_CONTEXT, Request, Scope

__all__ = ["DEAD_THREADS_KEPT", "Contexts"]

#: Ended threads whose history holders_at() still answers for.
DEAD_THREADS_KEPT = 256


class Contexts:
    """tid -> Context (the CPU context included), by process, with ended threads' history."""

    def __init__(self) -> None:
        self._ctx: dict[int, Context] = {CPU_CONTEXT: Context(pid=0, tid=CPU_CONTEXT)}
        self._proc_threads: dict[int, set[int]] = {}
        #: Every context's tid, built when asked after a birth or death.
        self._all: frozenset[int] | None = None
        self._dead: dict[int, dict[int, SlotTable]] = {}

    def __getitem__(self, tid: int) -> Context:
        return self._ctx[tid]

    def get(self, tid: int) -> Context | None:
        return self._ctx.get(tid)

    def __contains__(self, tid: object) -> bool:
        """True for CPU_CONTEXT and every traced thread."""
        return tid in self._ctx

    def __iter__(self) -> Iterator[int]:
        return iter(self._ctx)

    def values(self) -> Iterable[Context]:
        return self._ctx.values()

    def is_thread(self, tid: int) -> bool:
        """A traced thread (not the CPU context)."""
        return tid != CPU_CONTEXT and tid in self._ctx

    def add(self, pid: int, tid: int) -> Context:
        if tid <= 0 or tid in self._ctx:
            raise ValueError(f"tid: {tid} is not a new thread id")
        ctx = self._ctx[tid] = Context(pid=pid, tid=tid)
        self._proc_threads.setdefault(pid, set()).add(tid)
        self._all = None
        self._dead.pop(tid, None)  # a reused tid starts a new history
        return ctx

    def remove(self, tid: int) -> Context:
        """Forget a thread, keeping its slot history for late hits."""
        if not self.is_thread(tid):
            raise KeyError(tid)
        ctx = self._ctx.pop(tid)
        self._all = None
        self._dead[tid] = ctx.history
        while len(self._dead) > DEAD_THREADS_KEPT:
            del self._dead[next(iter(self._dead))]
        siblings = self._proc_threads[ctx.pid]
        siblings.discard(tid)
        if not siblings:
            del self._proc_threads[ctx.pid]
        return ctx

    def all(self) -> frozenset[int]:
        """CPU_CONTEXT and every traced thread (one shared set until the next birth or death)."""
        if self._all is None:
            self._all = frozenset(self._ctx)
        return self._all

    def of_request(self, request: Request) -> tuple[int, ...]:
        """The contexts a request applies to (kernel: all of them)."""
        if request.is_kernel:
            return tuple(self._ctx)
        if request.scope is Scope.THREAD:
            return (request.tid,) if self.is_thread(request.tid) else ()
        return tuple(self._proc_threads.get(request.pid, ()))

    def count_of(self, request: Request) -> int:
        """How many threads a user request applies to."""
        if request.scope is Scope.THREAD:
            return 1 if self.is_thread(request.tid) else 0
        return len(self._proc_threads.get(request.pid, ()))

    def threads(self) -> Mapping[int, int]:
        """tid -> pid of every traced thread (the CPU context is not included)."""
        return {tid: ctx.pid for tid, ctx in self._ctx.items() if tid != CPU_CONTEXT}

    def history(self, tid: int) -> Mapping[int, SlotTable]:
        """generation -> table of a live or recently ended thread."""
        ctx = self._ctx.get(tid)
        return ctx.history if ctx is not None else self._dead.get(tid, {})
