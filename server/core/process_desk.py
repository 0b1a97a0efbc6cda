"""The broker's process calls: AttachProcess, LaunchProcess, ReleaseProcess, and the attach a
request on an untraced process makes first (as ``gdb -p`` would).

Only a machine whose hooks say it ``attaches`` (the native one) takes processes this way;
on the simulated machine a request on an unknown pid is NOT_FOUND as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from hwbkptd.core.audit import audit
from hwbkptd.core.broker_types import BreakpointSpec, BreakpointView
from hwbkptd.core.commit import Commit
from hwbkptd.core.errors import BrokerError, FailedPrecondition, InvalidArgument, NotFound
from hwbkptd.core.launching import check_launch, spec_error
from hwbkptd.core.machine_hooks import MachineHooks
from hwbkptd.core.model import Scope
from hwbkptd.core.sessions import Session, SessionTable
from hwbkptd.core.tracing import Tracing

__all__ = ["ProcessDesk"]


class ProcessDesk:
    def __init__(
        self,
        *,
        sessions: SessionTable,
        tracing: Tracing,
        hooks: MachineHooks,
        applier: Commit,
        threads: Mapping[int, int],
        procs: Mapping[int, set[int]],
        stopping: Callable[[], bool],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._sessions = sessions
        self._tracing = tracing
        self._hooks = hooks
        self._applier = applier
        self._threads = threads
        self._procs = procs
        self._stopping = stopping
        self._spawn = spawn

    # --- a request on an untraced process -------------------------------------------
    def untraced_target(self, spec: BreakpointSpec) -> int:
        """The process a user request must attach first (0: none, or not this machine)."""
        if not self._hooks.attaches or spec.scope not in (Scope.PROCESS, Scope.THREAD):
            return 0
        pid, tid = spec.pid, spec.tid
        if not isinstance(pid, int) or not isinstance(tid, int) or pid < 0 or tid < 0:
            return 0  # the spec's own validation names what is wrong
        if spec.scope is Scope.PROCESS:
            return pid if pid > 0 and tid == 0 and self._needs_attach(pid, spec.nonstop) else 0
        if tid == 0:
            return 0
        if tid in self._threads:
            owner = self._threads[tid]
            return owner if self._needs_attach(owner, spec.nonstop) else 0
        owner = pid or self._hooks.process_of(tid)
        return owner if self._needs_attach(owner, spec.nonstop) else 0

    def _needs_attach(self, pid: int, nonstop: bool) -> bool:
        # A process followed for non-stop watches only is not traced: a request that
        # needs ptrace attaches it for real (and fails, precisely, if a debugger holds it).
        if pid not in self._procs:
            return True
        return not nonstop and self._tracing.nonstop_only(pid)

    async def set_attaching(
        self,
        session: Session,
        spec: BreakpointSpec,
        pid: int,
        *,
        check: Callable[[Session, BreakpointSpec, tuple[int, int]], object],
        create: Callable[[], Awaitable[BreakpointView]],
    ) -> BreakpointView:
        """Attach ``pid`` and ``create`` the request; a failure lets the process go again."""
        try:
            with self._tracing.pinned(pid):
                # Everything but the target is judged before attaching: a bad request
                # attaches nothing.
                check(session, spec, (pid, spec.tid if spec.scope is Scope.THREAD else 0))
                try:
                    await self._tracing.attach(pid, nonstop=spec.nonstop)
                except BrokerError as err:
                    raise spec_error(err) from None
                return await create()
        except BaseException:
            self._spawn(self._tracing.sweep())
            raise

    # --- the process calls ----------------------------------------------------------
    async def attach(self, token: str, pid: int, follow_fork: bool) -> tuple[int, ...]:
        session = self._sessions.get(token)
        if pid <= 0:
            raise InvalidArgument("pid", f"not a process id: {pid}")
        tids = await self._tracing.attach(pid, session_id=session.id, follow_fork=follow_fork)
        audit("process_attached", session, pid=pid, tids=list(tids))
        await self._settle_for(session)
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
        args, environment, where = check_launch(argv, env, cwd)
        if self._stopping():
            raise FailedPrecondition("the broker is shutting down")
        pid = await self._tracing.launch(
            session.id, session.name, args, environment, where, follow_fork
        )
        audit("process_launched", session, pid=pid, argv=list(args), cwd=where)
        await self._settle_for(session)
        return pid

    async def release(self, token: str, pid: int) -> None:
        session = self._sessions.get(token)
        if pid in self._procs and pid not in self._tracing:
            raise FailedPrecondition(f"process {pid} was not launched by the broker: it runs")
        self._tracing.check_release(session.id, pid)
        # Whatever the session set on it must be armed before the program runs.
        await self._applier.flush()
        await self._tracing.release(session.id, pid)
        audit("process_released", session, pid=pid)

    async def _settle_for(self, session: Session) -> None:
        await self._applier.flush()
        if session.ending:
            # The session ended while the process was being taken: nobody holds it now.
            await self._tracing.session_ended(session.id)
            await self._tracing.sweep()
            raise NotFound("token", "the session ended meanwhile")
