"""The broker: the calls sessions make, on the event loop (DESIGN section 5).

Every call runs validate -> mutate -> commit -> answer. It validates once;
mutations are synchronous calls into the rooms (requests, processes, placement),
so two calls never interleave inside one; ``Commit.flush`` (the commit) then
arms the slots and tells the owners. A call that raises has changed nothing.
After an ``await`` only what the await can change is checked again. Process
calls are ``process_calls``; what the machine reports is ``machine_news``; the
changes both share with the broker are ``mutations``. See docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import structlog

from hwbkptd.core import policy
from hwbkptd.core.answers import breakpoint_view, describe_machine, slot_map
from hwbkptd.core.arbiter import Arbiter
from hwbkptd.core.arch_port import Arch
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
    NotFound,
    PermissionDenied,
)
from hwbkptd.core.events import Event
from hwbkptd.core.launching import spec_error
from hwbkptd.core.machine_hooks import MachineHooks, SimHooks
from hwbkptd.core.machine_news import MachineNews
from hwbkptd.core.mechanism import HitReport, Mechanism, ProcessControl
from hwbkptd.core.model import Action, Filter, Scope
from hwbkptd.core.mutations import Mutations
from hwbkptd.core.process_calls import ProcessCalls
from hwbkptd.core.processes import ProcessTable
from hwbkptd.core.records import Record, RequestBook, new_record
from hwbkptd.core.routing import HitRouter
from hwbkptd.core.session_calls import MAX_HIT_BUFFER, MAX_LEASE_SECONDS, SessionCalls
from hwbkptd.core.sessions import Session, SessionTable
from hwbkptd.core.specs import Prepared, modified_request, prepare_spec, recheck_spec

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
        self._sessions = SessionTable(
            self._clock, lambda session: self._session_calls.lease_ended(session)
        )
        self._records = RequestBook()
        self._next_id = 0
        self._processes = ProcessTable(
            attaches=self._hooks.attaches, process_of=self._hooks.process_of
        )
        m = self._m = Mutations(
            arbiter=self._arbiter,
            requests=self._records,
            processes=self._processes,
            mechanism=mechanism,
            control=mechanism if isinstance(mechanism, ProcessControl) else None,
        )
        self._commit = Commit(
            arbiter=self._arbiter,
            mechanism=mechanism,
            pools=self._pools,
            records=self._records,
            threads=self._processes.threads,
            read_value=m.read_value,
            spawn=m.spawn,
            clock=self._clock,
        )
        self._router = HitRouter(
            arbiter=self._arbiter,
            records=self._records,
            sessions=self._sessions,
            clock=self._clock,
            halt_timeout=config.halt_timeout_seconds,
            stop_request=self._stop_after,
            resume=m.resume_thread,
            spawn=m.spawn,
        )
        self._halts = self._router.halts
        m.bind(self._commit, self._halts)
        self._process_calls = ProcessCalls(
            sessions=self._sessions,
            mutations=m,
            stopping=lambda: self._stopped,
            process_facts=self._hooks.process_facts,
        )
        self._session_calls = SessionCalls(
            sessions=self._sessions,
            config=config,
            mutations=m,
            process_calls=self._process_calls,
            stopping=lambda: self._stopped,
        )
        self._news = MachineNews(mutations=m, router=self._router, sessions=self._sessions)
        self._started = False
        self._stopped = False

    async def start(self) -> None:
        """Start the mechanism and the lease/halt-timeout timers."""
        if not self._started:
            self._started = True
            self._mechanism.start(self._news)
            _log.info(
                "broker_started", machine=self._config.machine, mechanism=self._mechanism.name
            )

    async def stop(self) -> None:
        """Remove every request, resume halted threads, detach, end every event stream."""
        if self._stopped:
            return
        self._stopped = True
        self._commit.close()
        sessions = list(self._sessions)
        for session in sessions:
            self._sessions.remove(session)
            for rid in sorted(session.requests):
                self._m.remove(rid, "shutdown")
        await self._m.commit()
        for tid in self._halts.tids():
            self._halts.drop(tid)
            await self._m.resume_thread(tid)
        for session in sessions:
            session.close()
        await self.finish_background_work()
        await self._processes.close()
        await self._mechanism.close()
        _log.info("broker_stopped", sessions=len(sessions))

    async def finish_background_work(self) -> None:
        """Wait until the work started by mechanism callbacks and timers is done."""
        await self._m.finish_background_work()

    # --- sessions ---------------------------------------------------------------
    def open_session(
        self, name: str, *, lease_seconds: float = 0, hit_buffer: int = 0, identity: Identity
    ) -> SessionInfo:
        return self._session_calls.open(name, lease_seconds, hit_buffer, identity)

    async def reauthorize(self, rights_of: Callable[[Identity], Identity | None]) -> list[str]:
        """A reloaded policy: see ``SessionCalls.reauthorize``."""
        return await self._session_calls.reauthorize(rights_of)

    def resume_session(self, token: str) -> SessionInfo:
        return self._session_calls.resume(token)

    async def close_session(self, token: str) -> None:
        await self._session_calls.close(token)

    def events(self, token: str, after_seq: int = 0) -> AsyncIterator[Sequence[Event]]:
        """Batches of events numbered above ``after_seq``; a newer stream ends an older one."""
        return self._session_calls.events(token, after_seq)

    # --- requests ---------------------------------------------------------------
    async def set_breakpoint(self, token: str, spec: BreakpointSpec) -> BreakpointView:
        session = self._sessions.get(token)
        pid = self._processes.attach_target(spec)
        if not pid:
            return await self._create(token, self._prepare(session, spec))
        try:
            with self._processes.pinned(pid):
                # Judged before attaching, the target taken as traced: a bad request
                # attaches nothing.
                tid = spec.tid if spec.scope is Scope.THREAD else 0
                prepared = self._prepare(session, spec, assume=(pid, tid))
                try:
                    await self._process_calls.take(pid, nonstop=spec.nonstop)
                except BrokerError as err:
                    raise spec_error(err) from None
                return await self._create(token, prepared)
        except BaseException:
            self._m.spawn(self._m.sweep())
            raise

    async def _create(self, token: str, prepared: Prepared) -> BreakpointView:
        norm = prepared.spec
        value = await self._m.read_value(norm)
        # The awaits let other calls run: the session or the target may be gone now.
        session = self._sessions.get(token)
        recheck_spec(
            norm,
            identity=session.identity,
            threads=self._processes.threads,
            processes=self._processes.processes,
            owned=len(session.requests),
        )
        rid = self._next_id + 1
        record = new_record(
            rid, session, norm, prepared.chunks, read_emulated=self._arch.read_emulated, value=value
        )
        delta = self._arbiter.add_request(record.request)
        self._next_id = rid
        self._records.add(record)
        session.requests.add(rid)
        self._commit.created(rid, delta)
        audit(
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
        await self._m.commit()
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
        record.hits.action = new_action
        record.hits.filter = new_filter
        if new_action is not old.action:
            # The holders did not change, so neither did the table's generation, but the
            # slots' halt flag did: the mechanism must get those tables again.
            self._commit.rearm(breakpoint_id)
        self._commit.absorb(delta)
        audit(
            "breakpoint_modified",
            session,
            breakpoint_id=breakpoint_id,
            priority=new_priority,
            action=new_action.value,
        )
        await self._m.commit()
        return self._view(record)

    async def remove_breakpoint(self, token: str, breakpoint_id: int) -> None:
        session = self._sessions.get(token)
        self._own(session, breakpoint_id)
        self._m.remove(breakpoint_id, "client")
        audit("breakpoint_removed", session, breakpoint_id=breakpoint_id, reason="client")
        await self._m.commit_and_sweep()

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
                await self._m.resume_thread(tid)
        if wanted:
            audit("threads_resumed", session, tids=list(wanted))
        return wanted

    def _prepare(
        self, session: Session, spec: BreakpointSpec, assume: tuple[int, int] | None = None
    ) -> Prepared:
        """Validate ``spec``; ``assume`` (pid, tid) counts as traced (an attach to come)."""
        threads: Mapping[int, int] = self._processes.threads
        procs: Mapping[int, object] = self._processes.processes
        if assume is not None:
            pid, tid = assume
            procs = {**procs, pid: ()}
            if tid:
                threads = {**threads, tid: pid}
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
        if other is not None and other.session.identity.name == session.identity.name:
            # The slot map shows every request with its session anyway: say what is wrong.
            raise PermissionDenied(
                f"breakpoint {breakpoint_id} belongs to session {other.session.name!r}",
                field="breakpoint_id",
            )
        raise NotFound("breakpoint_id", f"no breakpoint {breakpoint_id}")

    def _stop_after(self, rid: int) -> None:
        session = self._records[rid].session
        self._m.remove(rid, "stop_after")
        audit("breakpoint_removed", session, breakpoint_id=rid, reason="stop_after")
        self._m.spawn(self._m.commit_and_sweep())

    # --- processes (a machine with process control; the sim answers FAILED_PRECONDITION) --
    async def attach_process(
        self, token: str, pid: int, *, follow_fork: bool = False
    ) -> tuple[int, ...]:
        """Trace ``pid`` for this session until it ends (then detach if nobody else needs it)."""
        return await self._process_calls.attach(token, pid, follow_fork)

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
        return await self._process_calls.launch(token, argv, env, cwd, follow_fork)

    async def release_process(self, token: str, pid: int) -> None:
        """Let a process this session launched run its first instruction."""
        await self._process_calls.release(token, pid)

    async def detach_process(self, token: str, pid: int) -> tuple[bool, tuple[int, ...]]:
        """End this session's hold on ``pid`` (gdb's ``detach``): (let go, removed ids)."""
        return await self._process_calls.detach(token, pid)

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
        threads, procs = self._processes.threads, self._processes.processes
        if pid and pid not in procs:
            raise NotFound("pid", f"no traced process {pid}")
        shown = slot_map(
            self._arbiter,
            self._pools,
            pid=pid,
            threads=threads,
            tids=procs[pid] if pid else threads,
            halted=self._halts,
            refused=self._commit.refused,
            view=lambda rid: self._view(self._records[rid]),
        )
        return policy.slot_map_for(
            policy.CALLER.get(), shown, lambda rid: self._records[rid].session.identity.name
        )

    def attribute(self, hit: HitReport) -> tuple[int, ...]:
        """Request ids that held the hit's slot under the hit's generation."""
        return self._arbiter.holders_at(hit.tid, hit.pool, hit.index, hit.generation)

    def _view(self, record: Record) -> BreakpointView:
        return breakpoint_view(
            self._arbiter,
            record.id,
            session_name=record.session.name,
            spec=record.spec,
            chunks=record.request.chunks,
            hits=record.hits,
            priority=record.request.priority,
            live=record.id in self._records,
        )
