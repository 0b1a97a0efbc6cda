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
from hwbkptd.core.activity import Activity
from hwbkptd.core.answers import describe_machine, slot_map
from hwbkptd.core.arbiter import Arbiter
from hwbkptd.core.arch_port import Arch
from hwbkptd.core.breakpoint_calls import BreakpointCalls
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
    NotFound,
    Unavailable,
)
from hwbkptd.core.events import Event, Removed
from hwbkptd.core.limits import IdentityQuotas, MemoryBudget
from hwbkptd.core.machine_hooks import MachineHooks, SimHooks
from hwbkptd.core.machine_news import MachineNews
from hwbkptd.core.mechanism import HitReport, Mechanism, ProcessControl
from hwbkptd.core.model import Access, Action, Filter, Scope
from hwbkptd.core.mutations import Mutations
from hwbkptd.core.names import Resolved
from hwbkptd.core.process_calls import ProcessCalls
from hwbkptd.core.processes import ProcessTable
from hwbkptd.core.progress import prepare_names
from hwbkptd.core.records import RequestBook
from hwbkptd.core.renaming import Renamer
from hwbkptd.core.routing import HitRouter
from hwbkptd.core.session_calls import MAX_LEASE_SECONDS, SessionCalls
from hwbkptd.core.sessions import SessionTable

__all__ = [
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
        self.budget = MemoryBudget(config.limits.memory_budget_bytes)
        self.quotas = IdentityQuotas(config.limits, self._clock, self.budget)
        self._sessions = SessionTable(
            self._clock,
            lambda session: self._session_calls.lease_ended(session),
            budget=self.budget,
        )
        self._records = RequestBook()
        self._processes = ProcessTable(
            attaches=self._hooks.attaches,
            process_of=self._hooks.process_of,
            notify_stopless=bool(getattr(self._hooks, "notify_stopless", False)),
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
        # What puts a hit in words (issue 13); off with --no-hit-words.
        hit_names = self._hooks.names if config.hit_words else None
        self._router = HitRouter(
            arbiter=self._arbiter,
            records=self._records,
            sessions=self._sessions,
            clock=self._clock,
            halt_timeout=config.halt_timeout_seconds,
            stop_request=lambda rid: self._breakpoint_calls.stop_after(rid),
            resume=m.resume_thread,
            spawn=m.spawn,
            names=hit_names,
        )
        self._halts = self._router.halts
        m.bind(self._commit, self._halts)
        self._process_calls = ProcessCalls(
            sessions=self._sessions,
            mutations=m,
            stopping=lambda: self._stopped,
            process_facts=self._hooks.process_facts,
            clock=self._clock,
        )
        self._session_calls = SessionCalls(
            sessions=self._sessions,
            config=config,
            mutations=m,
            process_calls=self._process_calls,
            stopping=lambda: self._stopped,
            quotas=self.quotas,
            budget=self.budget,
        )
        self._breakpoint_calls = BreakpointCalls(
            arch=arch,
            pools=self._pools,
            hooks=self._hooks,
            sessions=self._sessions,
            records=self._records,
            mutations=m,
            commit=self._commit,
            halts=self._halts,
            process_calls=self._process_calls,
            clock=self._clock,
            names=self._hooks.names,
            hit_names=hit_names,
            limits=config.limits,
        )
        names = self._hooks.names
        self._news = MachineNews(
            mutations=m,
            router=self._router,
            sessions=self._sessions,
            names=names,
            renamer=(Renamer(names, arch, self._pools, self._clock) if names is not None else None),
        )
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
        self._breakpoint_calls.close()
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
            # The session's own last word, after its requests' removals: even a session
            # without requests learns why its stream ends (breakpoint 0: session-wide).
            session.emit(0, Removed(reason="shutdown"))
            session.close(Unavailable("the broker is shutting down"))
        self._sessions.activity.broker_stopping()
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
        return await self._breakpoint_calls.set(token, spec)

    async def modify_breakpoint(
        self,
        token: str,
        breakpoint_id: int,
        *,
        priority: int | None = None,
        action: Action | None = None,
        filter: Filter | None = None,
    ) -> BreakpointView:
        return await self._breakpoint_calls.modify(
            token, breakpoint_id, priority=priority, action=action, filter=filter
        )

    async def remove_breakpoint(self, token: str, breakpoint_id: int) -> None:
        await self._breakpoint_calls.remove(token, breakpoint_id)

    def list_breakpoints(self, token: str) -> tuple[BreakpointView, ...]:
        return self._breakpoint_calls.list(token)

    async def resume_threads(self, token: str, tids: Sequence[int]) -> tuple[int, ...]:
        """Let go of threads this session holds halted (all of them for ``()``)."""
        return await self._breakpoint_calls.resume_threads(token, tids)

    async def resolve_location(
        self, token: str, pid: int, location: str, access: Access
    ) -> Resolved:
        """What ``location`` names in ``pid`` now, placing nothing (an editor's preview)."""
        session = self._sessions.get(token)
        policy.check_target(session.identity, pid, self._hooks.process_facts, "pid")
        await prepare_names(self._hooks.names, session, self._clock, pid, location, access)
        return self._hooks.resolve(Scope.PROCESS, pid, location, access)

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
    @property
    def activity(self) -> Activity:
        """Every session's events and comings and goings, for observers (metrics, watches)."""
        return self._sessions.activity

    def open_sessions(self) -> tuple[tuple[str, str], ...]:
        """(session id, session name) of every open session, as the caller may see them
        (``policy.shows_name``)."""
        viewer = policy.CALLER.get()
        return tuple(
            (s.id, s.name if policy.shows_name(viewer, s.identity.name) else policy.HIDDEN_SESSION)
            for s in self._sessions
        )

    def session_owner(self, session_id: str) -> str | None:
        """The identity holding an open session; None when it is not open."""
        session = self._sessions.by_id(session_id)
        return session.identity.name if session is not None else None

    def request_owner(self, rid: int) -> str | None:
        """The identity holding a request; None when it is gone."""
        record = self._records.get(rid)
        return record.session.identity.name if record is not None else None

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
            view=self._breakpoint_calls.view,
        )
        return policy.slot_map_for(
            policy.CALLER.get(), shown, lambda rid: self.request_owner(rid) or ""
        )

    def attribute(self, hit: HitReport) -> tuple[int, ...]:
        """Request ids that held the hit's slot under the hit's generation."""
        return self._arbiter.holders_at(hit.tid, hit.pool, hit.index, hit.generation)
