"""The breakpoint calls: SetBreakpoint, ModifyBreakpoint, RemoveBreakpoint,
ListBreakpoints, ResumeThreads, and the removal a ``stop_after`` filter asks for.

Each call runs validate -> mutate -> commit -> answer (docs/architecture.md): the
spec is judged once (``specs``), an untraced target is taken first through
``process_calls`` (inside ``ProcessTable.pinned``, so a bad request attaches
nothing), the request record goes into the book and the arbiter, ``Commit``
turns the placement change into slot writes and owner events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hwbkptd.core.answers import breakpoint_view
from hwbkptd.core.arbiter import Arbiter
from hwbkptd.core.arch_port import Arch
from hwbkptd.core.audit import audit
from hwbkptd.core.broker_types import BreakpointSpec, BreakpointView
from hwbkptd.core.clock import Clock
from hwbkptd.core.commit import Commit
from hwbkptd.core.errors import BrokerError, FailedPrecondition, NotFound, PermissionDenied
from hwbkptd.core.halts import HeldThreads
from hwbkptd.core.launching import spec_error
from hwbkptd.core.limits import Limits
from hwbkptd.core.machine_hooks import MachineHooks
from hwbkptd.core.model import Action, Filter, Scope
from hwbkptd.core.mutations import Mutations
from hwbkptd.core.names import Names, NotMappedYet
from hwbkptd.core.process_calls import ProcessCalls
from hwbkptd.core.progress import prepare_hit_words, prepare_names
from hwbkptd.core.records import Record, RequestBook, new_record
from hwbkptd.core.sessions import Session, SessionTable
from hwbkptd.core.specs import Prepared, modified_request, prepare_spec, recheck_spec
from hwbkptd.core.waiting_names import WaitingNames

__all__ = ["BreakpointCalls"]


class BreakpointCalls:
    def __init__(
        self,
        *,
        arch: Arch,
        pools: Mapping[str, int],
        hooks: MachineHooks,
        sessions: SessionTable,
        records: RequestBook,
        mutations: Mutations,
        commit: Commit,
        halts: HeldThreads,
        process_calls: ProcessCalls,
        clock: Clock,
        names: Names | None,
        hit_names: Names | None,
        limits: Limits,
    ) -> None:
        self._arch = arch
        self._pools = pools
        self._hooks = hooks
        self._sessions = sessions
        self._records = records
        self._mutations = mutations
        self._arbiter: Arbiter = mutations.arbiter
        self._processes = mutations.processes
        self._commit = commit
        self._halts = halts
        self._process_calls = process_calls
        self._limits = limits
        self._clock = clock
        self._names = names
        #: What puts hits in words (None with ``--no-hit-words``): read before arming.
        self._hit_names = hit_names
        self._next_id = 0
        #: Requests by name in a module not mapped yet (issue 13): they wait here.
        self._waiting = WaitingNames(
            names=names,
            clock=clock,
            sessions=sessions,
            set_under=self._set,
            spawn=mutations.spawn,
        )

    def close(self) -> None:
        self._waiting.close()

    async def set(self, token: str, spec: BreakpointSpec) -> BreakpointView:
        try:
            return await self._set(token, spec)
        except NotMappedYet:
            if spec.scope is not Scope.PROCESS:
                raise
            # Everything but the address was judged: it waits for its module (issue 13).
            self._next_id += 1
            return self._waiting.wait(self._sessions.get(token), spec, self._next_id)

    async def _set(self, token: str, spec: BreakpointSpec, rid: int = 0) -> BreakpointView:
        session = self._sessions.get(token)
        if isinstance(spec.symbol, str) and spec.symbol and spec.scope is not Scope.KERNEL:
            # A large binary is read off the event loop, its progress told (issue 14).
            target = spec.pid if isinstance(spec.pid, int) and spec.pid > 0 else 0
            if not target and isinstance(spec.tid, int):
                target = self._processes.threads.get(spec.tid, 0)
            if target and not self._process_calls.may_touch(session.identity, target):
                target = 0  # judged below, by the spec's rules: nothing read, nothing told
            await prepare_names(self._names, session, self._clock, target, spec.symbol, spec.access)
            session = self._sessions.get(token)
        pid = self._processes.attach_target(spec)
        if not pid:
            prepared = self._prepare(session, spec)
            await self._prepare_hits(session, prepared)
            return await self._create(token, prepared, rid)
        try:
            with self._processes.pinned(pid):
                # Judged before attaching, the target taken as traced: a bad request
                # attaches nothing.
                tid = spec.tid if spec.scope is Scope.THREAD else 0
                prepared = self._prepare(session, spec, assume=(pid, tid))
                await self._prepare_hits(session, prepared)
                try:
                    await self._process_calls.take(
                        pid, nonstop=self._processes.follows_only(spec), report_to=session
                    )
                except BrokerError as err:
                    raise spec_error(err) from None
                return await self._create(token, prepared, rid)
        except BaseException:
            self._mutations.spawn(self._mutations.sweep())
            raise

    async def _prepare_hits(self, session: Session, prepared: Prepared) -> None:
        """The binaries its hits will be described in, read off the event loop first."""
        spec = prepared.spec
        if spec.scope is not Scope.KERNEL:
            await prepare_hit_words(self._hit_names, session, self._clock, spec.pid, spec.address)

    async def _create(self, token: str, prepared: Prepared, rid: int = 0) -> BreakpointView:
        """Create the request; ``rid``: under this id (given to a waiting name), else a new one."""
        norm = prepared.spec
        value = await self._mutations.read_value(norm)
        # The awaits let other calls run: the session or the target may be gone now.
        session = self._sessions.get(token)
        recheck_spec(
            norm,
            identity=session.identity,
            threads=self._processes.threads,
            processes=self._processes.processes,
            owned=len(session.requests),
            limits=self._limits,
        )
        rid = rid or self._next_id + 1
        record = new_record(
            rid, session, norm, prepared.chunks, read_emulated=self._arch.read_emulated, value=value
        )
        delta = self._arbiter.add_request(record.request)
        self._next_id = max(self._next_id, rid)
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
        await self._mutations.commit()
        return self._view(record)

    async def modify(
        self,
        token: str,
        breakpoint_id: int,
        *,
        priority: int | None = None,
        action: Action | None = None,
        filter: Filter | None = None,
    ) -> BreakpointView:
        session = self._sessions.get(token)
        self._waiting.check_modify(session, breakpoint_id)
        record = self._own(session, breakpoint_id)
        old = record.request
        request = modified_request(
            old, session.identity, priority=priority, action=action, filter=filter
        )
        new_priority, new_action = request.priority, request.action
        if request == old:
            return self._view(record)
        delta = self._arbiter.replace_request(request)
        record.request = request
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
        await self._mutations.commit()
        return self._view(record)

    async def remove(self, token: str, breakpoint_id: int) -> None:
        session = self._sessions.get(token)
        if self._waiting.remove(session, breakpoint_id):
            return
        self._own(session, breakpoint_id)
        self._mutations.remove(breakpoint_id, "client")
        audit("breakpoint_removed", session, breakpoint_id=breakpoint_id, reason="client")
        await self._mutations.commit_and_sweep()

    def list(self, token: str) -> tuple[BreakpointView, ...]:
        session = self._sessions.get(token)
        views = [self._view(self._records[rid]) for rid in session.requests]
        views += self._waiting.views(session)
        return tuple(sorted(views, key=lambda v: v.id))

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
                await self._mutations.resume_thread(tid)
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
            limits=self._limits,
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

    def stop_after(self, rid: int) -> None:
        """A request reached its filter's stop_after: remove it, as a client would."""
        session = self._records[rid].session
        self._mutations.remove(rid, "stop_after")
        audit("breakpoint_removed", session, breakpoint_id=rid, reason="stop_after")
        self._mutations.spawn(self._mutations.commit_and_sweep())

    def view(self, rid: int) -> BreakpointView:
        """The answer for one live request."""
        return self._view(self._records[rid])

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
