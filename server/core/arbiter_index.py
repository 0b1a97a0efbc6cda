"""The arbiter's request index: requests by scope, each list kept in rank order.

Chunks are interned to small ints (reference-counted) so that the first-fit
loops hash ints rather than dataclasses; a chunk keeps its id for as long as
any request holds it, which is what lets a slot keep its index.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping

from hwbkptd.core.model import Chunk, Request, Scope, rank_key
from hwbkptd.core.placement import Entry, Needs

__all__ = ["RequestIndex", "count_by"]


def count_by(counts: dict[int, int], rid: int, delta: int) -> None:
    """Add ``delta`` to a per-request count, dropping counts that reach zero."""
    n = counts.get(rid, 0) + delta
    if n:
        counts[rid] = n
    else:
        counts.pop(rid, None)


class RequestIndex:
    """Requests by id and by scope (kernel, per process, per thread), in rank order."""

    def __init__(self, pools: Mapping[str, int]) -> None:
        self._pools = pools
        self.requests: dict[int, Request] = {}
        self.entry: dict[int, Entry] = {}
        self.needs: dict[int, Needs] = {}
        self.kernel: list[Entry] = []
        self.by_pid: dict[int, list[Entry]] = {}
        self.by_tid: dict[int, list[Entry]] = {}
        self.chunk: dict[int, Chunk] = {}
        #: (pid, chunk id) and (tid, chunk id) -> the user entries of that scope holding it.
        self._pid_chunk: dict[tuple[int, int], set[Entry]] = {}
        self._tid_chunk: dict[tuple[int, int], set[Entry]] = {}
        self._chunk_id: dict[Chunk, int] = {}
        self._refs: dict[int, int] = {}
        self._next_cid = 0

    def validate(self, request: Request) -> None:
        """Raise ValueError (naming the field) for what the arbiter cannot place."""
        if not request.chunks:
            raise ValueError("chunks: a request needs at least one chunk")
        for chunk in request.chunks:
            if chunk.pool not in self._pools:
                raise ValueError(f"chunks: unknown pool {chunk.pool!r}")
        if request.scope is Scope.THREAD and request.tid <= 0:
            raise ValueError("tid: a thread request needs a thread id")
        if request.scope is Scope.PROCESS and request.pid <= 0:
            raise ValueError("pid: a process request needs a process id")

    def add(self, request: Request) -> None:
        self._insert(request, self._intern(request))

    def replace(self, old: Request, new: Request) -> None:
        # Intern the new chunks before releasing the old ones, so that a chunk
        # both versions hold keeps its id (and therefore its slot).
        needs = self._intern(new)
        self.remove(old)
        self._insert(new, needs)

    def remove(self, request: Request) -> Needs:
        """Drop a request; returns its chunk needs (ids stay valid while others hold them)."""
        rid = request.id
        entry = self.entry.pop(rid)
        bucket = self._bucket(request)
        del bucket[bisect.bisect_left(bucket, entry)]
        if not bucket and request.scope is Scope.THREAD:
            del self.by_tid[request.tid]
        elif not bucket and request.scope is Scope.PROCESS:
            del self.by_pid[request.pid]
        del self.requests[rid]
        needs = self.needs.pop(rid)
        by_chunk, owner = self._chunk_map(request)
        for _pool, chunks in needs:
            for cid in chunks:
                if by_chunk is not None:
                    holders = by_chunk[(owner, cid)]
                    holders.discard(entry)
                    if not holders:
                        del by_chunk[(owner, cid)]
                self._release(cid)
        return needs

    def users(self, pid: int, tid: int) -> Iterator[Entry]:
        """The user requests that apply to one thread, in rank order (a lazy merge).

        Lazy because a rescan usually stops reading once the pools are full.
        """
        of_process = self.by_pid.get(pid, ())
        of_thread = self.by_tid.get(tid, ())
        if not of_thread:
            return iter(of_process)
        if not of_process:
            return iter(of_thread)
        return heapq.merge(of_process, of_thread)

    def sharers(self, pid: int, tid: int) -> Callable[[int], Iterable[Entry]]:
        """chunk id -> the user entries of one thread that need that chunk."""
        pid_chunk = self._pid_chunk
        tid_chunk = self._tid_chunk

        def of(cid: int) -> Iterable[Entry]:
            return (*pid_chunk.get((pid, cid), ()), *tid_chunk.get((tid, cid), ()))

        return of

    def users_applicable(self, pid: int, tid: int) -> Iterator[Entry]:
        """The user requests that apply to a thread, unordered."""
        yield from self.by_pid.get(pid, ())
        yield from self.by_tid.get(tid, ())

    def in_rank_order(self) -> list[Request]:
        return [self.requests[e[1]] for e in sorted(self.entry.values())]

    def _insert(self, request: Request, needs: Needs) -> None:
        rid = request.id
        entry: Entry = (rank_key(request), rid)
        self.requests[rid] = request
        self.entry[rid] = entry
        self.needs[rid] = needs
        bisect.insort(self._bucket(request), entry)
        by_chunk, owner = self._chunk_map(request)
        if by_chunk is not None:
            for _pool, chunks in needs:
                for cid in chunks:
                    by_chunk.setdefault((owner, cid), set()).add(entry)

    def _chunk_map(self, request: Request) -> tuple[dict[tuple[int, int], set[Entry]] | None, int]:
        if request.scope is Scope.THREAD:
            return self._tid_chunk, request.tid
        if request.scope is Scope.PROCESS:
            return self._pid_chunk, request.pid
        return None, 0

    def _bucket(self, request: Request) -> list[Entry]:
        if request.is_kernel:
            return self.kernel
        if request.scope is Scope.THREAD:
            return self.by_tid.setdefault(request.tid, [])
        return self.by_pid.setdefault(request.pid, [])

    def _intern(self, request: Request) -> Needs:
        by_pool: dict[str, list[int]] = {}
        for chunk in request.chunks:
            cid = self._chunk_id.get(chunk)
            if cid is None:
                self._next_cid += 1
                cid = self._next_cid
                self._chunk_id[chunk] = cid
                self.chunk[cid] = chunk
            same = by_pool.setdefault(chunk.pool, [])
            if cid not in same:  # a request needs a repeated chunk once
                same.append(cid)
                self._refs[cid] = self._refs.get(cid, 0) + 1
        return tuple((pool, tuple(cids)) for pool, cids in sorted(by_pool.items()))

    def _release(self, cid: int) -> None:
        refs = self._refs[cid] - 1
        if refs:
            self._refs[cid] = refs
        else:
            del self._refs[cid]
            del self._chunk_id[self.chunk.pop(cid)]
