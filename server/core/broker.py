"""The broker: one object on the event loop that owns all state (DESIGN section 5).

It validates what sessions ask for and changes placement with synchronous
arbiter calls, so two calls never interleave inside one; ``Commit.flush``
then arms the slots and tells the owners, and ``HitRouter`` takes the hits the
other way. A call that raises has changed nothing: every check runs before the
first change, and again after any ``await`` that let the world move.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import ChainMap
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from typing import Any

import structlog

from hwbkptd.arch.base import Arch
from hwbkptd.core.arbiter import Arbiter
from hwbkptd.core.audit import audit
from hwbkptd.core.broker_types import (
    BreakpointSpec,
    BreakpointView,
    BrokerConfig,
    Identity,
    MachineDescription,
    SessionInfo,
    SlotMapView,
    SlotView,
    ThreadSlotsView,
)
from hwbkptd.core.clock import Clock, SystemClock
from hwbkptd.core.commit import Commit
from hwbkptd.core.errors import (
    BrokerError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from hwbkptd.core.events import Event, EventKind, TargetExec, TargetExited
from hwbkptd.core.machine_hooks import MachineHooks, SimHooks
from hwbkptd.core.mechanism import HitReport, Mechanism, Refusal
from hwbkptd.core.model import CPU_CONTEXT, Access, Action, Filter, RequestState
from hwbkptd.core.process_desk import ProcessDesk
from hwbkptd.core.records import Record, RecordIndex, new_record
from hwbkptd.core.routing import HitRouter
from hwbkptd.core.sessions import Session, SessionTable
from hwbkptd.core.specs import Prepared, check_name, modified_request, prepare_spec
from hwbkptd.core.tracing import Tracing
from hwbkptd.core.views import breakpoint_view, describe_machine, thread_slots

__all__ = [
    "MAX_HIT_BUFFER",
    "MAX_LEASE_SECONDS",
    "BreakpointSpec",
    "BreakpointView",
    "Broker",
    "BrokerConfig",
    "Identity",
    "MachineDescription",
    "MachineHooks",
    "SessionInfo",
    "SlotMapView",
    "SlotView",
    "ThreadSlotsView",
]

_log = structlog.get_logger("hwbkptd.broker")

#: Upper bounds for what a session may ask for when it opens.
MAX_LEASE_SECONDS = 86_400.0
MAX_HIT_BUFFER = 1_000_000


_audit = audit


class Broker:
    """Owns arbitration, sessions and the mechanism. Every method runs on the event loop.

    Errors are ``hwbkptd.core.errors`` exceptions; a call that raises changes nothing.
    """

    def __init__(
        self,
        *,
        arch: Arch,
        pools: Mapping[str, int],
        mechanism: Mechanism,
        config: BrokerConfig,
        clock: Clock | None = None,
        hooks: MachineHooks | None = None,
    ) -> None:
        self._arch = arch
        self._hooks: MachineHooks = hooks if hooks is not None else SimHooks()
        self._pools = dict(pools)
        self._mechanism = mechanism
        self._config = config
        self._arbiter = Arbiter(self._pools)
        self._clock: Clock = clock or SystemClock()
        self._sessions = SessionTable(self._clock, self._lease_ended)
        self._records = RecordIndex()
        self._next_id = 0
        self._threads: dict[int, int] = {}
        self._procs: dict[int, set[int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._applier = Commit(
            arbiter=self._arbiter,
            mechanism=mechanism,
            pools=self._pools,
            records=self._records,
            threads=self._threads,
            read_value=self._read_value,
            spawn=self._spawn,
            clock=self._clock,
        )
        self._router = HitRouter(
            arbiter=self._arbiter,
            records=self._records,
            sessions=self._sessions,
            clock=self._clock,
            halt_timeout=config.halt_timeout_seconds,
            stop_request=self._stop_after,
            resume=self._resume_thread,
            spawn=self._spawn,
        )
        self._halts = self._router.halts
        self._tracing = Tracing(
            mechanism=mechanism,
            add_thread=self.on_thread_started,
            forget_process=self._forget_process,
            flush=self._applier.flush,
            requested=lambda pid: bool(self._records.of_process(pid)),
        )
        self._desk = ProcessDesk(
            sessions=self._sessions,
            tracing=self._tracing,
            hooks=self._hooks,
            applier=self._applier,
            threads=self._threads,
            procs=self._procs,
            stopping=lambda: self._stopped,
            spawn=self._spawn,
        )
        self._started = False
        self._stopped = False

    async def start(self) -> None:
        """Start the mechanism and the lease/halt-timeout timers."""
        if not self._started:
            self._started = True
            self._mechanism.start(self)
            _log.info(
                "broker_started", machine=self._config.machine, mechanism=self._mechanism.name
            )

    async def stop(self) -> None:
        """Remove every request, resume halted threads, detach, end every event stream."""
        if self._stopped:
            return
        self._stopped = True
        self._applier.close()
        sessions = list(self._sessions)
        for session in sessions:
            self._sessions.remove(session)
            for rid in sorted(session.requests):
                self._remove(rid, "shutdown")
        await self._applier.flush()
        for tid in self._halts.tids():
            self._halts.drop(tid)
            await self._resume_thread(tid)
        for session in sessions:
            session.close()
        await self.settle()
        await self._tracing.close()
        await self._mechanism.close()
        _log.info("broker_stopped", sessions=len(sessions))

    async def settle(self) -> None:
        """Wait until the work started by mechanism callbacks and timers is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- sessions ---------------------------------------------------------------
    def open_session(
        self, name: str, *, lease_seconds: float = 0, hit_buffer: int = 0, identity: Identity
    ) -> SessionInfo:
        check_name(name, self._config.max_name_length)
        if not 0 <= lease_seconds <= MAX_LEASE_SECONDS:
            raise InvalidArgument(
                "lease_seconds",
                f"must be 0 (default) to {MAX_LEASE_SECONDS:g}, got {lease_seconds}",
            )
        if not 0 <= hit_buffer <= MAX_HIT_BUFFER:
            raise InvalidArgument(
                "hit_buffer", f"must be 0 (default) to {MAX_HIT_BUFFER}, got {hit_buffer}"
            )
        if self._stopped:
            raise FailedPrecondition("the broker is shutting down")
        session = self._sessions.open(
            name,
            identity=identity,
            lease_seconds=lease_seconds or self._config.lease_seconds,
            hit_buffer=hit_buffer or self._config.hit_buffer,
            retention=self._config.replay_retention,
        )
        _audit("session_opened", session, lease_seconds=session.lease_seconds)
        return self._session_info(session)

    def resume_session(self, token: str) -> SessionInfo:
        session = self._sessions.get(token)
        _audit("session_resumed", session, last_seq=session.log.last_seq)
        return self._session_info(session)

    async def close_session(self, token: str) -> None:
        await self._end_session(self._sessions.get(token), "session_closed")

    def events(self, token: str, after_seq: int = 0) -> AsyncIterator[Sequence[Event]]:
        """Batches of events numbered above ``after_seq``; a newer stream ends an older one."""
        session = self._sessions.get(token)
        if after_seq < 0:
            raise InvalidArgument("after_seq", f"must not be negative, got {after_seq}")
        return session.stream(after_seq)

    @staticmethod
    def _session_info(session: Session) -> SessionInfo:
        return SessionInfo(
            session_id=session.id,
            name=session.name,
            token=session.token,
            lease_seconds=session.lease_seconds,
            last_seq=session.log.last_seq,
        )

    def _lease_ended(self, session: Session) -> None:
        self._spawn(self._end_session(session, "lease"))

    async def _end_session(self, session: Session, reason: str) -> None:
        if session.ending:
            return
        self._sessions.remove(session)
        for rid in sorted(session.requests):
            self._remove(rid, reason)
        held = self._halts.held_by(session.id)
        resume = [tid for tid in held if self._halts.release(tid, session.id)]
        # Placement first, so a released thread cannot trap on what is being removed.
        await self._applier.flush()
        for tid in resume:
            await self._resume_thread(tid)
        await self._tracing.session_ended(session.id)
        session.close()
        _audit("session_ended", session, reason=reason, resumed=resume)
        await self._tracing.sweep()

    # --- requests ---------------------------------------------------------------
    async def set_breakpoint(self, token: str, spec: BreakpointSpec) -> BreakpointView:
        session = self._sessions.get(token)
        pid = self._desk.untraced_target(spec)
        if not pid:
            return await self._set(token, spec)
        return await self._desk.set_attaching(
            session, spec, pid, check=self._prepare, create=lambda: self._set(token, spec)
        )

    async def _set(self, token: str, spec: BreakpointSpec) -> BreakpointView:
        prepared = self._prepare(self._sessions.get(token), spec)
        value = await self._read_value(prepared.spec)
        # The read let other calls run: the session or the target may be gone now.
        session = self._sessions.get(token)
        prepared = self._prepare(session, spec)
        rid = self._next_id + 1
        record = new_record(
            rid,
            session,
            prepared.spec,
            prepared.chunks,
            read_emulated=self._arch.read_emulated,
            value=value,
        )
        delta = self._arbiter.add_request(record.request)
        self._next_id = rid
        self._records.add(record)
        session.requests.add(rid)
        self._applier.created(rid, delta)
        norm = prepared.spec
        _audit(
            "breakpoint_set",
            session,
            breakpoint_id=rid,
            scope=norm.scope.value,
            pid=norm.pid,
            tid=norm.tid,
            address=hex(norm.address),
            length=norm.length,
            access=norm.access.value,
            priority=record.request.priority,
            action=norm.action.value,
        )
        await self._applier.flush()
        return self._view(record)

    async def modify_breakpoint(
        self,
        token: str,
        breakpoint_id: int,
        *,
        priority: int | None = None,
        action: Action | None = None,
        filter: Filter | None = None,
    ) -> BreakpointView:
        session = self._sessions.get(token)
        record = self._own(session, breakpoint_id)
        old = record.request
        request = modified_request(
            old, session.identity, priority=priority, action=action, filter=filter
        )
        new_priority, new_action, new_filter = request.priority, request.action, request.filter
        if request == old:
            return self._view(record)
        delta = self._arbiter.replace_request(request)
        record.request = request
        record.spec = dataclasses.replace(
            record.spec, priority=new_priority, action=new_action, filter=new_filter
        )
        record.tally.action = new_action
        record.tally.filter = new_filter
        if new_action is not old.action:
            # The holders did not change, so neither did the table's generation, but the
            # slots' halt flag did: the mechanism must get those tables again.
            self._applier.rearm(breakpoint_id)
        self._applier.absorb(delta)
        _audit(
            "breakpoint_modified",
            session,
            breakpoint_id=breakpoint_id,
            priority=new_priority,
            action=new_action.value,
        )
        await self._applier.flush()
        return self._view(record)

    async def remove_breakpoint(self, token: str, breakpoint_id: int) -> None:
        session = self._sessions.get(token)
        self._own(session, breakpoint_id)
        self._remove(breakpoint_id, "client")
        _audit("breakpoint_removed", session, breakpoint_id=breakpoint_id, reason="client")
        await self._flush_and_sweep()

    def list_breakpoints(self, token: str) -> tuple[BreakpointView, ...]:
        session = self._sessions.get(token)
        return tuple(self._view(self._records[rid]) for rid in sorted(session.requests))

    async def resume_threads(self, token: str, tids: Sequence[int]) -> tuple[int, ...]:
        """Let go of threads this session holds halted (all of them for ``()``)."""
        session = self._sessions.get(token)
        held = self._halts.held_by(session.id)
        wanted = tuple(dict.fromkeys(tids)) if tids else held
        for tid in wanted:
            if tid not in held:
                raise FailedPrecondition(f"thread {tid} is not halted by this session")
        for tid in wanted:
            if self._halts.release(tid, session.id):
                await self._resume_thread(tid)
        if wanted:
            _audit("threads_resumed", session, tids=list(wanted))
        return wanted

    def _prepare(
        self, session: Session, spec: BreakpointSpec, assume: tuple[int, int] | None = None
    ) -> Prepared:
        """Validate ``spec``; ``assume`` (pid, tid) counts as traced (a pending attach)."""
        threads: Mapping[int, int] = self._threads
        procs: Mapping[int, set[int]] = self._procs
        if assume is not None:
            pid, tid = assume
            procs = ChainMap({pid: set()}, self._procs)
            if tid:
                threads = ChainMap({tid: pid}, self._threads)
        return prepare_spec(
            spec,
            identity=session.identity,
            arch=self._arch,
            pools=self._pools,
            threads=threads,
            processes=procs,
            owned=len(session.requests),
            hooks=self._hooks,
        )

    def _own(self, session: Session, breakpoint_id: int) -> Record:
        if breakpoint_id in session.requests:
            return self._records[breakpoint_id]
        other = self._records.get(breakpoint_id)
        if other is not None:
            # The slot map shows every request with its session anyway: say what is wrong.
            raise PermissionDenied(
                f"breakpoint {breakpoint_id} belongs to session {other.session.name!r}",
                field="breakpoint_id",
            )
        raise NotFound("breakpoint_id", f"no breakpoint {breakpoint_id}")

    def _remove(self, rid: int, reason: str, *first: EventKind) -> None:
        record = self._records.pop(rid)
        record.tally.stopped = True
        record.session.requests.discard(rid)
        self._applier.removed(rid, record.session, reason, *first)

    def _stop_after(self, rid: int) -> None:
        session = self._records[rid].session
        self._remove(rid, "stop_after")
        _audit("breakpoint_removed", session, breakpoint_id=rid, reason="stop_after")
        self._spawn(self._flush_and_sweep())

    async def _flush_and_sweep(self) -> None:
        """Arm the new placement, then let go of processes no session needs any more."""
        await self._applier.flush()
        await self._tracing.sweep()

    async def _read_value(self, spec: BreakpointSpec) -> bytes:
        if spec.access is Access.EXEC:
            return b""
        try:
            return bytes(await self._mechanism.read_memory(spec.pid, spec.address, spec.length))
        except (BrokerError, OSError) as err:
            # Not every mechanism can read every address (kernel memory, say): the first
            # hit then reports an empty old value.
            _log.debug("value_unreadable", pid=spec.pid, address=hex(spec.address), error=str(err))
            return b""

    async def _resume_thread(self, tid: int) -> None:
        if tid != CPU_CONTEXT and tid not in self._threads:
            return
        try:
            await self._mechanism.resume(tid)
        except (BrokerError, OSError) as err:
            _log.warning("resume_failed", tid=tid, error=str(err))

    # --- processes (native mechanisms; the sim answers FAILED_PRECONDITION) -----
    async def attach_process(
        self, token: str, pid: int, *, follow_fork: bool = False
    ) -> tuple[int, ...]:
        """Trace ``pid`` for this session until it ends (then detach if nobody else needs it)."""
        return await self._desk.attach(token, pid, follow_fork)

    async def launch_process(
        self,
        token: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        *,
        follow_fork: bool = False,
    ) -> int:
        """Start a program held at its first instruction until this session releases it."""
        return await self._desk.launch(token, argv, env, cwd, follow_fork)

    async def release_process(self, token: str, pid: int) -> None:
        """Let a process this session launched run its first instruction."""
        await self._desk.release(token, pid)

    async def detach_process(self, token: str, pid: int) -> tuple[bool, tuple[int, ...]]:
        """End this session's hold on ``pid`` (gdb's ``detach``): (let go, removed ids)."""
        session = self._sessions.get(token)
        if pid <= 0:
            raise InvalidArgument("pid", f"not a process id: {pid}")
        if pid not in self._tracing:
            if pid in self._procs:
                raise FailedPrecondition(
                    f"process {pid} belongs to the simulated machine: end it with the sim service"
                )
            raise NotFound("pid", f"process {pid} is not under the broker")
        mine = tuple(
            rid
            for rid in self._records.of_process(pid)
            if (record := self._records.get(rid)) is not None and record.session is session
        )
        for rid in mine:
            self._remove(rid, "detached")
        await self._tracing.drop_need(session.id, pid)
        _audit("process_detached", session, pid=pid, removed=list(mine))
        await self._flush_and_sweep()
        return pid not in self._tracing, mine

    def _forget_process(self, pid: int) -> None:
        for tid in sorted(self._procs.get(pid, ())):
            self._drop_thread(tid)
        self._procs.pop(pid, None)

    # --- public views -----------------------------------------------------------
    def describe(self) -> MachineDescription:
        return describe_machine(
            self._arch,
            self._pools,
            self._mechanism.info(),
            self._config,
            parts=self._hooks.mechanisms(),
            notes=self._hooks.notes(),
        )

    def slot_map(self, pid: int = 0) -> SlotMapView:
        if pid and pid not in self._procs:
            raise NotFound("pid", f"no traced process {pid}")
        tids = self._procs[pid] if pid else self._threads
        requests = self._arbiter.requests()
        contexts = [CPU_CONTEXT] if any(r.is_kernel for r in requests) else []
        contexts += sorted(tids, key=lambda t: (self._threads[t], t))
        threads = tuple(
            thread_slots(
                self._arbiter.table(tid),
                self._pools,
                self._holder,
                halted=tid in self._halts,
                refused=self._applier.refused(tid),
            )
            for tid in contexts
        )
        waiting = tuple(
            self._view(self._records[r.id])
            for r in requests
            if (not pid or r.pid == pid or r.is_kernel)
            and self._arbiter.state(r.id)[0] is not RequestState.INSTALLED
        )
        return SlotMapView(threads=threads, waiting=waiting)

    def attribute(self, hit: HitReport) -> tuple[int, ...]:
        """Request ids that held the hit's slot under the hit's generation."""
        return self._arbiter.holders_at(hit.tid, hit.pool, hit.index, hit.generation)

    def _holder(self, rid: int) -> tuple[int, str, int]:
        request = self._arbiter.request(rid)
        return (rid, request.session_name, request.priority)

    def _view(self, record: Record) -> BreakpointView:
        return breakpoint_view(
            self._arbiter,
            record.id,
            session_name=record.session.name,
            spec=record.spec,
            chunks=record.request.chunks,
            tally=record.tally,
            priority=record.request.priority,
            live=record.id in self._records,
        )

    # --- MechanismSink ----------------------------------------------------------
    def on_hits(self, hits: Sequence[HitReport]) -> None:
        self._router.on_hits(hits)

    def on_hits_lost(self, tid: int, count: int) -> None:
        if count > 0 and (tid == CPU_CONTEXT or tid in self._threads):
            self._router.on_hits_lost(tid, count)

    def on_thread_started(self, pid: int, tid: int) -> None:
        if tid <= 0 or tid in self._threads or self._tracing.stale(pid):
            return
        if self._hooks.attaches and pid not in self._tracing:
            self._tracing.adopt(pid)
        delta = self._arbiter.add_thread(pid, tid)
        self._threads[tid] = pid
        self._procs.setdefault(pid, set()).add(tid)
        self._applier.absorb(delta)
        self._spawn(self._applier.flush())

    def on_thread_exited(self, pid: int, tid: int, exit_code: int) -> None:
        if tid not in self._threads:
            return
        pid = self._threads[tid]
        gone = TargetExited(pid=pid, tid=tid, exit_code=exit_code)
        for rid in self._records.of_thread(tid):
            self._remove(rid, "target_exited", gone)
        self._drop_thread(tid)
        self._spawn(self._flush_and_sweep())

    def on_process_exited(self, pid: int, exit_code: int) -> None:
        gone = TargetExited(pid=pid, tid=0, exit_code=exit_code)
        for rid in self._records.of_process(pid):
            self._remove(rid, "target_exited", gone)
        self._forget_process(pid)
        # Sessions that attached or launched it hear of its end even without a request.
        for session_id in sorted(self._tracing.exited(pid)):
            session = self._sessions.by_id(session_id)
            if session is not None:
                session.emit(0, gone)
        self._spawn(self._applier.flush())

    def on_process_exec(self, pid: int) -> None:
        # The address space is gone: an address means nothing in the new program.
        for rid in self._records.of_process(pid):
            self._remove(rid, "target_exec", TargetExec(pid=pid))
        self._spawn(self._flush_and_sweep())

    def on_refusals(self, refusals: Sequence[Refusal]) -> None:
        if self._applier.note_refusals(refusals):
            self._spawn(self._applier.flush())

    def _drop_thread(self, tid: int) -> None:
        pid = self._threads.pop(tid)
        self._applier.absorb(self._arbiter.remove_thread(tid))
        self._procs.get(pid, set()).discard(tid)
        self._applier.thread_gone(tid)
        self._halts.drop(tid)

    # --- background work --------------------------------------------------------
    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("background_task_failed", error=repr(task.exception()))
