"""Hits from the mechanism to the sessions that own them (DESIGN section 3).

A trap is attributed with the generation it happened under, so a hit that
races a rewrite is never blamed on the slot's new owner. Every request that
held the slot then judges the hit (counts, values, filters); reported hits go
to the owner's event log. A HALT hit keeps the thread stopped until every
session that reported it has let it go, or the halt timeout passes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from hwbkptd.core.arbiter import Arbiter
from hwbkptd.core.clock import Clock
from hwbkptd.core.events import HaltTimeout, Hit, HitsDropped
from hwbkptd.core.filters import reached_stop
from hwbkptd.core.halts import HeldThreads
from hwbkptd.core.hit_words import add_words, put_words
from hwbkptd.core.hits import HitState, count_hit, count_run, old_value_at, value_at
from hwbkptd.core.mechanism import HitReport
from hwbkptd.core.model import Access
from hwbkptd.core.names import Names
from hwbkptd.core.records import RequestBook
from hwbkptd.core.sessions import Session, SessionTable

__all__ = ["HitRouter"]

_log = structlog.get_logger("hwbkptd.broker")


class HitRouter:
    def __init__(
        self,
        *,
        arbiter: Arbiter,
        records: RequestBook,
        sessions: SessionTable,
        clock: Clock,
        halt_timeout: float,
        stop_request: Callable[[int], None],
        resume: Callable[[int], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        names: Names | None = None,
    ) -> None:
        self._arbiter = arbiter
        self._records = records
        self._sessions = sessions
        self._clock = clock
        self._halt_timeout = halt_timeout
        self._stop_request = stop_request
        self._resume = resume
        self._spawn = spawn
        self._names = names
        self.halts = HeldThreads()

    def on_hits(self, hits: Sequence[HitReport]) -> None:
        halted: set[int] = set()
        holders_at = self._arbiter.holders_at
        # Reported hits per session, in order, queued in one pass each (``_emit``).
        out: dict[Session, list[tuple[int, Hit, int]]] = {}
        seen: dict[tuple[int, str, int, int], tuple[int, ...]] = {}
        # A batch is mostly runs of hits of one slot: holders are looked up once per run,
        # and a run with one holder is judged in one call (``count_run``).
        n = len(hits)
        i = 0
        while i < n:
            report = hits[i]
            tid, pool, index, generation = report.tid, report.pool, report.index, report.generation
            j = i + 1
            while j < n:
                r = hits[j]
                if r.tid != tid or r.generation != generation or r.index != index or r.pool != pool:
                    break
                j += 1
            run = hits[i:j] if j - i < n else hits
            i = j
            key = (tid, pool, index, generation)
            holders = seen.get(key)
            if holders is None:
                holders = seen[key] = holders_at(*key)
            for r in run:
                if r.halted:
                    halted.add(tid)
                    break
            if len(holders) == 1:
                taken = self._route_run(run, holders[0], out)
                run = run[taken:]
            for report in run:
                self._route_one(report, holders, out)
        self._emit(out)
        for tid in halted:
            if tid not in self.halts:
                # Every HALT holder filtered the hit out: nobody wants the thread stopped.
                self._spawn(self._resume(tid))

    def _route_run(
        self, run: Sequence[HitReport], rid: int, out: dict[Session, list[tuple[int, Hit, int]]]
    ) -> int:
        """The run's hits for its one holder, up to a stop_after; how many reports it took."""
        record = self._records.get(rid)
        if record is None:
            return len(run)
        state = record.hits
        request = record.request
        reported: list[tuple[HitReport, Hit]] = []
        taken = count_run(request, state, run, 0, reported)
        if not reported:
            return taken
        session = record.session
        queued = out.get(session)
        if queued is None:
            queued = out[session] = []
        names = self._names
        if names is not None and run[0].tid:
            resolved = record.accepted.resolved  # not ``spec``: see ``_route_one``
            chunks = request.chunks
            last: tuple[int, int, Access | None] | None = None
            words = None
            for report, hit in reported:
                key = (report.ip, report.address, hit.access)
                if key != last or words is None:
                    words = names.describe_hit(report.pid, *key)
                    last = key
                put_words(hit, words, report, resolved, chunks)
        for report, hit in reported:
            queued.append((rid, hit, report.time_ns))
            if hit.halted:
                self._hold(report.pid, report.tid, session, rid)
        if reached_stop(request.filter, state.reported_count):
            self._stop(state, rid, out)
        return taken

    def _route_one(
        self,
        report: HitReport,
        holders: tuple[int, ...],
        out: dict[Session, list[tuple[int, Hit, int]]],
    ) -> None:
        """One report for each of its holders, in holder order."""
        records = self._records
        names = self._names
        for index, rid in enumerate(holders):
            record = records.get(rid)
            if record is None:
                continue
            state = record.hits
            request = record.request
            hit = count_hit(
                request,
                state,
                report,
                value_at(report, index),
                old_value_at(report, index),
            )
            if hit is None:
                continue
            if names is not None and report.tid:
                # ``accepted``: a modify never changes the resolution, and ``spec`` builds a
                # new spec per call (a fifth of the per-hit cost under BPF, measured).
                add_words(names, hit, report, record.accepted.resolved, request.chunks)
            session = record.session
            queued = out.get(session)
            if queued is None:
                queued = out[session] = []
            queued.append((rid, hit, report.time_ns))
            if hit.halted:
                self._hold(report.pid, report.tid, session, rid)
            if request.filter.stop_after and reached_stop(request.filter, state.reported_count):
                self._stop(state, rid, out)

    def _stop(
        self, state: HitState, rid: int, out: dict[Session, list[tuple[int, Hit, int]]]
    ) -> None:
        """The request reached its stop_after: its hits so far go out, then its removal."""
        state.stopped = True
        self._emit(out)
        self._stop_request(rid)

    @staticmethod
    def _emit(out: dict[Session, list[tuple[int, Hit, int]]]) -> None:
        for session, queued in out.items():
            session.emit_hits(queued)
        out.clear()

    def on_hits_lost(self, tid: int, count: int) -> None:
        """The mechanism lost ``count`` traps of a thread: tell every session holding a slot."""
        told: set[str] = set()
        for pool in self._arbiter.table(tid).pools.values():
            for entry in pool:
                for rid in entry.holders if entry is not None else ():
                    record = self._records.get(rid)
                    if record is not None and record.session.id not in told:
                        told.add(record.session.id)
                        record.session.emit(0, HitsDropped(count=count))

    def _hold(self, pid: int, tid: int, session: Session, rid: int) -> None:
        halt = self.halts.hold(pid, tid, session.id, rid)
        if halt.timer is None:
            expired = functools.partial(self._halt_expired, tid)
            halt.timer = self._clock.call_later(self._halt_timeout, expired)

    def _halt_expired(self, tid: int) -> None:
        halt = self.halts.drop(tid)
        if halt is None:
            return
        for session_id, rid in halt.holders.items():
            session = self._sessions.by_id(session_id)
            if session is not None:
                session.emit(rid, HaltTimeout(tid=tid, seconds=self._halt_timeout))
        _log.info(
            "halt_timeout", tid=tid, seconds=self._halt_timeout, sessions=sorted(halt.holders)
        )
        self._spawn(self._resume(tid))
