"""The changes that touch several rooms at once, made the same way by every caller.

A client call (``broker``, ``process_calls``) and machine news (``machine_news``)
both add and drop threads, forget processes, remove requests, commit and let go
of unneeded processes. Each such change is written once here, over the rooms it
touches (processes, requests, placement, commit, halts), and never calls back
into the broker: callers go down to it, it goes down to the rooms and the
machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

from hwbkptd.core.arbiter import Arbiter
from hwbkptd.core.broker_types import BreakpointSpec
from hwbkptd.core.commit import Commit
from hwbkptd.core.errors import BrokerError
from hwbkptd.core.events import EventKind, RemovedReason
from hwbkptd.core.halts import HeldThreads
from hwbkptd.core.mechanism import Mechanism, ProcessControl, Untracing
from hwbkptd.core.model import CPU_CONTEXT, Access
from hwbkptd.core.processes import ProcessTable
from hwbkptd.core.records import RequestBook

__all__ = ["Mutations"]

_log = structlog.get_logger("hwbkptd.broker")


class Mutations:
    """Shared multi-room changes; every method runs on the event loop."""

    def __init__(
        self,
        *,
        arbiter: Arbiter,
        requests: RequestBook,
        processes: ProcessTable,
        mechanism: Mechanism,
        control: ProcessControl | None,
    ) -> None:
        self.arbiter = arbiter
        self.requests = requests
        self.processes = processes
        self.mechanism = mechanism
        #: The machine's process control; None where it has none (the simulated machine).
        self.control = control
        self._tasks: set[asyncio.Task[None]] = set()
        self.committer: Commit
        self.halts: HeldThreads

    def bind(self, commit: Commit, halts: HeldThreads) -> None:
        """The commit room and the halt book, built after this (they take ``spawn`` and
        ``read_value`` from here)."""
        self.committer = commit
        self.halts = halts

    # --- threads and processes -----------------------------------------------------------
    def add_thread(self, pid: int, tid: int) -> bool:
        """A thread the machine reports or an attach returned; placed at the next commit."""
        if not self.processes.add_thread(pid, tid):
            return False
        self.committer.absorb(self.arbiter.add_thread(pid, tid))
        return True

    def drop_thread(self, tid: int) -> None:
        self.processes.drop_thread(tid)
        self._unplace(tid)

    def forget_process(self, pid: int) -> None:
        for tid in self.processes.forget_process(pid):
            self._unplace(tid)

    def _unplace(self, tid: int) -> None:
        self.committer.absorb(self.arbiter.remove_thread(tid))
        self.committer.thread_gone(tid)
        self.halts.drop(tid)

    # --- requests --------------------------------------------------------------------
    def remove(self, rid: int, reason: RemovedReason, *first: EventKind) -> None:
        """Remove a request from the requests room and placement; its owner hears at commit."""
        record = self.requests.pop(rid)
        record.hits.stopped = True
        record.session.requests.discard(rid)
        self.committer.removed(rid, record.session, reason, *first)

    # --- commit and let go ---------------------------------------------------------------
    async def commit(self) -> None:
        await self.committer.flush()

    async def commit_and_sweep(self) -> None:
        """Arm the new placement, then let go of processes no session needs any more."""
        await self.committer.flush()
        await self.sweep()

    async def sweep(self) -> None:
        """Detach every taken process no session needs any more."""
        for pid in self.processes.unneeded(self.requests.has_process):
            await self._detach(pid)
        control: object = self.control  # an optional capability beside ProcessControl
        if isinstance(control, Untracing):
            for pid in self.processes.untraceable(self._needs_ptrace):
                await self._untrace(control, pid)

    def _needs_ptrace(self, pid: int) -> bool:
        follows = self.processes.follows_only
        return any(not follows(self.requests[rid].spec) for rid in self.requests.of_process(pid))

    async def _untrace(self, control: Untracing, pid: int) -> None:
        """The last request that stops threads went: ptrace lets the process go, its
        non-stop watches stay armed (nothing to unplace: ptrace held none of them)."""
        if not self.processes.begin_untrace(pid):
            return
        try:
            await control.untrace(pid)
            _log.info("process_untraced", pid=pid)
        except (BrokerError, OSError) as err:
            _log.warning("untrace_failed", pid=pid, error=str(err))
        finally:
            self.processes.end_detach(pid)

    async def _detach(self, pid: int) -> None:
        tids = self.processes.begin_detach(pid)
        if tids is None:
            return
        try:
            for tid in tids:
                self._unplace(tid)
            await self.committer.flush()
            if self.control is not None:
                await self.control.detach(pid)
            _log.info("process_detached", pid=pid)
        except (BrokerError, OSError) as err:
            _log.warning("detach_failed", pid=pid, error=str(err))
        finally:
            self.processes.end_detach(pid)

    async def kill_launches(self, pids: list[int]) -> None:
        """End launches never released: a launch that fails leaves no process behind.

        A failure is logged (the session is gone anyway).
        """
        for pid in pids:
            try:
                if self.control is not None:
                    await self.control.kill_launched(pid)
                    _log.info("launch_killed", pid=pid, reason="its session never released it")
            except (BrokerError, OSError) as err:
                _log.warning("kill_failed", pid=pid, error=str(err))

    # --- the machine's threads and memory -------------------------------------------------
    async def resume_thread(self, tid: int) -> None:
        if tid != CPU_CONTEXT and tid not in self.processes.threads:
            return
        try:
            await self.mechanism.resume(tid)
        except (BrokerError, OSError) as err:
            _log.warning("resume_failed", tid=tid, error=str(err))

    async def read_value(self, spec: BreakpointSpec) -> bytes:
        if spec.access is Access.EXEC:
            return b""
        try:
            return bytes(await self.mechanism.read_memory(spec.pid, spec.address, spec.length))
        except (BrokerError, OSError) as err:
            # Not every mechanism can read every address (kernel memory, say): the first
            # hit then reports an empty old value.
            _log.debug("value_unreadable", pid=spec.pid, address=hex(spec.address), error=str(err))
            return b""

    # --- background work ----------------------------------------------------------------
    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("background_task_failed", error=repr(task.exception()))

    async def finish_background_work(self) -> None:
        """Wait until the work started by machine news and timers is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
