"""The process calls: AttachProcess, LaunchProcess, ReleaseProcess, DetachProcess, and the
attach a request on an untraced process makes first (as ``gdb -p`` would).

Each call validates, asks the processes room what to do, has the machine's
``ProcessControl`` do it, records the outcome in the room and commits. A
machine without process control (the simulated one) refuses with
FAILED_PRECONDITION naming what it lacks; its processes come from the sim service.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence

import structlog

from hwbkptd.core import policy
from hwbkptd.core.audit import audit
from hwbkptd.core.broker_types import Identity
from hwbkptd.core.clock import Clock, SystemClock
from hwbkptd.core.errors import BrokerError, FailedPrecondition, InvalidArgument, NotFound
from hwbkptd.core.events import ProgressOperation
from hwbkptd.core.launching import check_launch
from hwbkptd.core.machine_hooks import SimHooks
from hwbkptd.core.mechanism import ProcessControl
from hwbkptd.core.mutations import Mutations
from hwbkptd.core.policy import ProcessFacts
from hwbkptd.core.processes import ProcessTable
from hwbkptd.core.progress import ATTACH_MIN_THREADS, ProgressReporter, session_emitter
from hwbkptd.core.sessions import Session, SessionTable

__all__ = ["ProcessCalls"]

_log = structlog.get_logger("hwbkptd.broker")
_SIM_HOOKS = SimHooks()


class ProcessCalls:
    def __init__(
        self,
        *,
        sessions: SessionTable,
        mutations: Mutations,
        stopping: Callable[[], bool],
        process_facts: Callable[[int], ProcessFacts] = _SIM_HOOKS.process_facts,
        clock: Clock | None = None,
    ) -> None:
        self._process_facts = process_facts
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._sessions = sessions
        self._mutations = mutations
        self._processes: ProcessTable = mutations.processes
        self._stopping = stopping

    def _control(self, what: str) -> ProcessControl:
        control = self._mutations.control
        if control is None:
            raise FailedPrecondition(
                f"{what} needs a native machine; use the sim service to create processes"
            )
        return control

    async def take(
        self,
        pid: int,
        *,
        session_id: str = "",
        follow_fork: bool = False,
        nonstop: bool = False,
        report_to: Session | None = None,
    ) -> tuple[int, ...]:
        """Trace ``pid`` (or join the tracing); ``session_id`` makes the need explicit.

        ``nonstop`` follows the process without tracing it, for non-stop watches; a
        process followed that way is traced for real by a later plain attach. For a
        request still to be created, call it inside ``ProcessTable.pinned(pid)``.
        ``report_to``: the session told the attach's progress (issue 14, core/progress.py).
        """
        control = self._control("attach")
        processes = self._processes
        with processes.pinned(pid):
            await processes.wait_detached(pid)
            nonstop = processes.attach_nonstop(pid, nonstop)
            reporter = self._reporter(report_to, pid)
            progress = reporter.update if reporter is not None else None
            tids: tuple[int, ...] = ()
            try:
                tids = tuple(await control.attach(pid, follow_fork, nonstop, progress=progress))
            finally:
                if reporter is not None:
                    # Failed too: no report comes after it (the call's answer says why).
                    reporter.finish(len(tids))
            news = processes.attached(
                pid, session_id=session_id, follow_fork=follow_fork, nonstop=nonstop
            )
            if news:
                _log.info("process_traced", pid=pid, tids=list(tids), nonstop=nonstop)
            for tid in tids:
                self._mutations.add_thread(pid, tid)
        return tids

    def _reporter(self, session: Session | None, pid: int) -> ProgressReporter | None:
        if session is None:
            return None
        return ProgressReporter(
            session_emitter(session),
            self._clock,
            operation=ProgressOperation.ATTACH,
            pid=pid,
            min_total=ATTACH_MIN_THREADS,
        )

    async def attach(self, token: str, pid: int, follow_fork: bool) -> tuple[int, ...]:
        session = self._sessions.get(token)
        if pid <= 0:
            raise InvalidArgument("pid", f"not a process id: {pid}")
        policy.check_target(session.identity, pid, self._process_facts, "pid")
        tids = await self.take(
            pid, session_id=session.id, follow_fork=follow_fork, report_to=session
        )
        audit("process_attached", session, pid=pid, tids=list(tids))
        await self._commit_for(session)
        return tids

    async def launch(
        self,
        token: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        follow_fork: bool,
    ) -> int:
        session = self._sessions.get(token)
        policy.check_launch(session.identity)
        args, environment, where = check_launch(argv, env, cwd)
        if self._stopping():
            raise FailedPrecondition("the broker is shutting down")
        control = self._control("launch")
        launching = asyncio.ensure_future(control.launch(args, environment, where, follow_fork))
        try:
            pid = await asyncio.shield(launching)
        except asyncio.CancelledError:
            # The caller is gone, and the program may start all the same: nobody would
            # release it, so it must not be left behind.
            with contextlib.suppress(BrokerError, OSError):
                await control.kill_launched(await launching)
            raise
        self._processes.launched(
            pid, session_id=session.id, session_name=session.name, follow_fork=follow_fork
        )
        self._mutations.add_thread(pid, pid)
        audit("process_launched", session, pid=pid, argv=list(args), cwd=where)
        await self._commit_for(session)
        return pid

    async def release(self, token: str, pid: int) -> None:
        session = self._sessions.get(token)
        self._processes.check_release(session.id, pid)
        # Whatever the session set on it must be armed before the program runs.
        await self._mutations.commit()
        entry = self._processes.check_release(session.id, pid)
        await self._control("release").release(pid)
        entry.held = False
        audit("process_released", session, pid=pid)

    async def detach(self, token: str, pid: int) -> tuple[bool, tuple[int, ...]]:
        session = self._sessions.get(token)
        if pid <= 0:
            raise InvalidArgument("pid", f"not a process id: {pid}")
        processes = self._processes
        if processes.taken(pid) is None:
            if pid in processes.processes:
                raise FailedPrecondition(
                    f"process {pid} belongs to the simulated machine: end it with the sim service"
                )
            raise NotFound("pid", f"process {pid} is not under the broker")
        requests = self._mutations.requests
        mine = tuple(
            rid
            for rid in requests.of_process(pid)
            if (record := requests.get(rid)) is not None and record.session is session
        )
        for rid in mine:
            self._mutations.remove(rid, "detached")
        if processes.drop_need(session.id, pid):
            await self._control("release").release(pid)
        audit("process_detached", session, pid=pid, removed=list(mine))
        await self._mutations.commit_and_sweep()
        return processes.taken(pid) is None, mine

    def may_touch(self, identity: Identity, pid: int) -> bool:
        """Whether ``identity`` may touch ``pid`` (a process gone meanwhile: no longer)."""
        try:
            policy.check_target(identity, pid, self._process_facts, "pid")
        except BrokerError:
            return False
        return True

    def drop_disallowed(self, session: Session) -> list[int]:
        """A reloaded policy: let go of the processes the session attached that its
        identity may no longer touch (what it launched is its own, and stays)."""
        dropped: list[int] = []
        for pid in self._processes.needed_by(session.id):
            taken = self._processes.taken(pid)
            if taken is None or taken.launched_by == session.id:
                continue
            if not self.may_touch(session.identity, pid):
                self._processes.drop_need(session.id, pid)
                dropped.append(pid)
        return dropped

    async def session_ended(self, session_id: str) -> None:
        """Drop the session's needs; what it launched and never released is killed."""
        await self._mutations.kill_launches(self._processes.session_ended(session_id))

    async def _commit_for(self, session: Session) -> None:
        await self._mutations.commit()
        if session.ending:
            # The session ended while the process was being taken: nobody holds it now.
            await self.session_ended(session.id)
            await self._mutations.sweep()
            raise NotFound("token", "the session ended meanwhile")
