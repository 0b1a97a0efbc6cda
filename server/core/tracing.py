"""Which sessions need which traced process: attach on first need, detach after the last.

A process is needed by a session that attached it explicitly (AttachProcess),
launched it (LaunchProcess), or holds a process- or thread-scope request on
it. A request on a process the native machine does not trace yet attaches it,
as ``gdb -p`` does; when no session needs it any more the broker lets it go
(``Mechanism.detach``: slots cleared, threads running). A process the broker
launched is held at its first instruction until its launching session releases
it; a launch that fails leaves no process behind: if that session ends first (or
the LaunchProcess call is abandoned), the program is killed before its first
instruction.

Only processes attached or launched through here are ever detached: the
simulated machine's processes belong to the sim service.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from hwbkptd.core.errors import BrokerError, FailedPrecondition, NotFound, PermissionDenied
from hwbkptd.core.mechanism import Mechanism

__all__ = ["Traced", "Tracing"]

_log = structlog.get_logger("hwbkptd.broker")


@dataclass(slots=True)
class Traced:
    pid: int
    follow_fork: bool = False
    #: Sessions (by id) that attached or launched it: they need it until they end.
    explicit: set[str] = field(default_factory=set)
    #: The launching session's id and name; "" when attached.
    launched_by: str = ""
    launched_by_name: str = ""
    #: Launched and not released yet: held at its first instruction.
    held: bool = False
    #: Followed for non-stop watches only (never stopped, not ptraced): a request that
    #: stops threads attaches it for real first.
    nonstop_only: bool = False


class Tracing:
    """The broker's book of attached processes; every method runs on the event loop."""

    def __init__(
        self,
        *,
        mechanism: Mechanism,
        add_thread: Callable[[int, int], None],
        forget_process: Callable[[int], None],
        flush: Callable[[], Awaitable[None]],
        requested: Callable[[int], bool],
    ) -> None:
        self._mechanism = mechanism
        self._add_thread = add_thread
        self._forget_process = forget_process
        self._flush = flush
        self._requested = requested
        self._procs: dict[int, Traced] = {}
        self._pins: Counter[int] = Counter()
        self._detaching: dict[int, asyncio.Future[None]] = {}
        #: Detached pids: late thread-start news about them is stale.
        self._gone: set[int] = set()

    # --- queries --------------------------------------------------------------------
    def __contains__(self, pid: object) -> bool:
        return pid in self._procs

    def get(self, pid: int) -> Traced | None:
        return self._procs.get(pid)

    @property
    def processes(self) -> Mapping[int, Traced]:
        return self._procs

    def nonstop_only(self, pid: int) -> bool:
        """True for a process followed for non-stop watches only (not ptraced)."""
        entry = self._procs.get(pid)
        return entry is not None and entry.nonstop_only

    def stale(self, pid: int) -> bool:
        """True for news about a process this book let go (and did not take back)."""
        return pid in self._gone and pid not in self._procs

    # --- pins: a process being set up must not be swept meanwhile ----------------------
    @contextlib.contextmanager
    def pinned(self, pid: int) -> Iterator[None]:
        self._pins[pid] += 1
        try:
            yield
        finally:
            self._pins[pid] -= 1
            if self._pins[pid] <= 0:
                del self._pins[pid]

    # --- attach, launch, release ----------------------------------------------------
    async def attach(
        self, pid: int, *, session_id: str = "", follow_fork: bool = False, nonstop: bool = False
    ) -> tuple[int, ...]:
        """Trace ``pid`` (or join the tracing); ``session_id`` makes the need explicit.

        ``nonstop`` follows the process without tracing it, for non-stop watches; a
        process followed that way is traced for real by a later plain attach.
        Call it inside ``pinned(pid)`` when the need is a request still to be created.
        """
        with self.pinned(pid):
            await self._wait_detached(pid)
            entry = self._procs.get(pid)
            nonstop = nonstop and (entry is None or entry.nonstop_only)
            tids = tuple(await self._mechanism.attach(pid, follow_fork, nonstop))
            if entry is None:
                entry = self._procs[pid] = Traced(
                    pid, follow_fork=follow_fork, nonstop_only=nonstop
                )
                self._gone.discard(pid)
                _log.info("process_traced", pid=pid, tids=list(tids), nonstop=nonstop)
            elif entry.nonstop_only and not nonstop:
                entry.nonstop_only = False
                _log.info("process_traced", pid=pid, tids=list(tids), nonstop=False)
            for tid in tids:
                self._add_thread(pid, tid)
            if session_id:
                entry.explicit.add(session_id)
        return tids

    async def launch(
        self,
        session_id: str,
        session_name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        follow_fork: bool,
    ) -> int:
        launching = asyncio.ensure_future(self._mechanism.launch(argv, env, cwd, follow_fork))
        try:
            pid = await asyncio.shield(launching)
        except asyncio.CancelledError:
            # The caller is gone, and the program may start all the same: nobody will
            # release it.
            with contextlib.suppress(BrokerError, OSError):
                await self._mechanism.kill_launched(await launching)
            raise
        self._gone.discard(pid)
        self._procs[pid] = Traced(
            pid,
            follow_fork=follow_fork,
            explicit={session_id},
            launched_by=session_id,
            launched_by_name=session_name,
            held=True,
        )
        self._add_thread(pid, pid)
        return pid

    def check_release(self, session_id: str, pid: int) -> Traced:
        entry = self._procs.get(pid)
        if entry is None:
            raise NotFound("pid", f"no process {pid} launched by the broker")
        if not entry.launched_by:
            raise FailedPrecondition(f"process {pid} was attached, not launched: it already runs")
        if entry.launched_by != session_id:
            raise PermissionDenied(
                f"process {pid} was launched by session {entry.launched_by_name!r}; "
                "only that session may release it",
                field="pid",
            )
        if not entry.held:
            raise FailedPrecondition(f"process {pid} is already released")
        return entry

    async def release(self, session_id: str, pid: int) -> None:
        entry = self.check_release(session_id, pid)
        await self._mechanism.release(pid)
        entry.held = False

    # --- endings --------------------------------------------------------------------
    async def session_ended(self, session_id: str) -> None:
        """Drop the session's explicit needs; kill what it launched and never released
        (returns once those are gone)."""
        held: list[int] = []
        for entry in self._procs.values():
            entry.explicit.discard(session_id)
            if entry.launched_by == session_id and entry.held:
                entry.held = False
                held.append(entry.pid)
        for pid in held:
            try:
                await self._mechanism.kill_launched(pid)
                _log.info("launch_killed", pid=pid, reason="its session ended before releasing it")
            except (BrokerError, OSError) as err:
                _log.warning("kill_failed", pid=pid, error=str(err))

    async def drop_need(self, session_id: str, pid: int) -> None:
        """The session no longer needs ``pid``: its explicit need goes, a launch it still
        holds runs."""
        entry = self._procs.get(pid)
        if entry is None:
            return
        entry.explicit.discard(session_id)
        if entry.launched_by == session_id and entry.held:
            entry.held = False
            await self._mechanism.release(pid)

    def exited(self, pid: int) -> set[str]:
        """The process ended; returns the sessions that needed it explicitly."""
        entry = self._procs.pop(pid, None)
        return set(entry.explicit) if entry is not None else set()

    def adopt(self, pid: int) -> None:
        """A process appeared on its own (a followed fork): needed by whoever follows forks."""
        if pid in self._procs or pid in self._pins:
            return
        followers = {s for e in self._procs.values() if e.follow_fork for s in e.explicit}
        self._procs[pid] = Traced(pid, follow_fork=True, explicit=followers)
        self._gone.discard(pid)

    def unneeded(self) -> list[int]:
        return [
            pid
            for pid, entry in self._procs.items()
            if not entry.explicit and pid not in self._pins and not self._requested(pid)
        ]

    async def sweep(self) -> None:
        """Detach every process no session needs any more."""
        for pid in self.unneeded():
            await self._detach(pid)

    async def _detach(self, pid: int) -> None:
        entry = self._procs.pop(pid, None)
        if entry is None:
            return
        self._gone.add(pid)
        done = asyncio.get_running_loop().create_future()
        self._detaching[pid] = done
        try:
            # The broker forgets the threads first, so nothing is written to them after.
            self._forget_process(pid)
            await self._flush()
            await self._mechanism.detach(pid)
            _log.info("process_detached", pid=pid)
        except (BrokerError, OSError) as err:
            _log.warning("detach_failed", pid=pid, error=str(err))
        finally:
            del self._detaching[pid]
            done.set_result(None)

    async def _wait_detached(self, pid: int) -> None:
        # A detach in flight must finish before the process is taken again, or the
        # mechanism would hand back threads it is about to let go.
        while (pending := self._detaching.get(pid)) is not None:
            await asyncio.shield(pending)

    async def close(self) -> None:
        """Wait for detaches in flight (the mechanism's close lets the rest go)."""
        pending: Iterable[asyncio.Future[None]] = list(self._detaching.values())
        for fut in pending:
            with contextlib.suppress(Exception):
                await fut
