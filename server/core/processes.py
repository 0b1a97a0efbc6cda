"""The processes room: which threads the broker knows, and which processes it took.

It owns two facts. tid -> pid for every thread placement may use (the one copy:
the broker's other rooms ask here). And the processes the broker took itself:
attached (AttachProcess, or a request on a process not traced yet, as ``gdb -p``
does), launched (held at its first instruction until its session releases it),
or adopted (a followed fork), with the sessions that need each one. A process
nobody needs any more is let go.

The room keeps state and answers with decisions (what to attach, what to
release, what to detach); it calls neither the mechanism nor the broker. The
process calls (``process_calls``) and the machine news (``machine_news``) act
on its answers. Only processes taken here are ever let go: the simulated
machine's processes belong to the sim service.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from hwbkptd.core.broker_types import BreakpointSpec
from hwbkptd.core.errors import FailedPrecondition, NotFound, PermissionDenied
from hwbkptd.core.model import Action, Scope

__all__ = ["ProcessTable", "TakenProcess"]


@dataclass(slots=True)
class TakenProcess:
    """A process the broker attached, launched or adopted, and who needs it."""

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
    #: Sessions that attached it explicitly (AttachProcess): traced while any remains.
    attached_by: set[str] = field(default_factory=set)


class ProcessTable:
    """Every method runs on the event loop and returns without awaiting the machine."""

    def __init__(
        self, *, attaches: bool, process_of: Callable[[int], int], notify_stopless: bool = False
    ) -> None:
        #: True when a request on an untraced process takes it (the native machine).
        self._attaches = attaches
        #: NOTIFY requests are served without stopping threads (``--notify bpf``/``sample``):
        #: they follow a process like non-stop requests, without tracing it.
        self._notify_stopless = notify_stopless
        self._process_of = process_of
        self._threads: dict[int, int] = {}
        self._procs: dict[int, set[int]] = {}
        self._taken: dict[int, TakenProcess] = {}
        self._pins: Counter[int] = Counter()
        self._detaching: dict[int, asyncio.Future[None]] = {}
        #: Let-go pids: late thread-start news about them is stale.
        self._gone: set[int] = set()

    # --- threads: tid -> pid -----------------------------------------------------------
    @property
    def threads(self) -> Mapping[int, int]:
        """tid -> pid of every known thread (read-only for the other rooms)."""
        return self._threads

    @property
    def processes(self) -> Mapping[int, set[int]]:
        """pid -> tids of every known process."""
        return self._procs

    def add_thread(self, pid: int, tid: int) -> bool:
        """Note a new thread; False when it is known already or its process was let go."""
        if tid <= 0 or tid in self._threads or self.stale(pid):
            return False
        if self._attaches and pid not in self._taken:
            self._adopt(pid)
        self._threads[tid] = pid
        self._procs.setdefault(pid, set()).add(tid)
        return True

    def drop_thread(self, tid: int) -> int:
        pid = self._threads.pop(tid)
        self._procs.get(pid, set()).discard(tid)
        return pid

    def forget_process(self, pid: int) -> list[int]:
        """Forget the process; its threads, to be dropped from placement by the caller."""
        tids = sorted(self._procs.pop(pid, ()))
        for tid in tids:
            del self._threads[tid]
        return tids

    def stale(self, pid: int) -> bool:
        """True for news about a process this table let go (and did not take back)."""
        return pid in self._gone and pid not in self._taken

    # --- taken processes: queries ------------------------------------------------------
    def taken(self, pid: int) -> TakenProcess | None:
        return self._taken.get(pid)

    def attach_target(self, spec: BreakpointSpec) -> int:
        """The process a user request must attach first (0: none, or not this machine)."""
        if not self._attaches or spec.scope not in (Scope.PROCESS, Scope.THREAD):
            return 0
        pid, tid = spec.pid, spec.tid
        if not isinstance(pid, int) or not isinstance(tid, int) or pid < 0 or tid < 0:
            return 0  # the spec's own validation names what is wrong
        stopless = self.follows_only(spec)
        if spec.scope is Scope.PROCESS:
            return pid if pid > 0 and tid == 0 and self._needs_attach(pid, stopless) else 0
        if tid == 0:
            return 0
        owner = self._threads.get(tid) or pid or self._process_of(tid)
        return owner if self._needs_attach(owner, stopless) else 0

    def follows_only(self, spec: BreakpointSpec) -> bool:
        """Whether the request's process is followed without being traced: a non-stop
        request, or a NOTIFY one where the machine serves NOTIFY without stopping."""
        return spec.nonstop or (self._notify_stopless and spec.action is Action.NOTIFY)

    def _needs_attach(self, pid: int, nonstop: bool) -> bool:
        # A process followed for non-stop watches only is not traced: a request that
        # needs ptrace attaches it for real (and fails, precisely, if a debugger holds it).
        if pid not in self._procs:
            return True
        entry = self._taken.get(pid)
        return not nonstop and entry is not None and entry.nonstop_only

    def attach_nonstop(self, pid: int, nonstop: bool) -> bool:
        """Whether an attach asking for ``nonstop`` follows ``pid`` for non-stop watches only:
        a process traced for real stays so."""
        entry = self._taken.get(pid)
        return nonstop and (entry is None or entry.nonstop_only)

    def unneeded(self, requested: Callable[[int], bool]) -> list[int]:
        """Processes to let go: nobody attached, launched, pinned or ``requested`` them."""
        return [
            pid
            for pid, entry in self._taken.items()
            if not entry.explicit and pid not in self._pins and not requested(pid)
        ]

    def untraceable(self, needs_ptrace: Callable[[int], bool]) -> list[int]:
        """Processes traced for real that nothing needs traced any more (issue 11): NOTIFY is
        served without stopping, and no HALT request (``needs_ptrace``), launch hold,
        explicit attach, fork following or set-up in progress needs ptrace."""
        if not self._notify_stopless:
            return []
        return [
            pid
            for pid, entry in self._taken.items()
            if not entry.nonstop_only
            and not entry.held
            and not entry.attached_by
            and not entry.follow_fork
            and pid not in self._pins
            and pid not in self._detaching
            and not needs_ptrace(pid)
        ]

    def begin_untrace(self, pid: int) -> bool:
        """Start letting ptrace go of ``pid`` while it stays followed (False: not traced)."""
        entry = self._taken.get(pid)
        if entry is None or entry.nonstop_only:
            return False
        entry.nonstop_only = True
        self._detaching[pid] = asyncio.get_running_loop().create_future()
        return True

    # --- pins: a process being set up must not be let go meanwhile ------------------------
    @contextlib.contextmanager
    def pinned(self, pid: int) -> Iterator[None]:
        self._pins[pid] += 1
        try:
            yield
        finally:
            self._pins[pid] -= 1
            if self._pins[pid] <= 0:
                del self._pins[pid]

    # --- taking and letting go ------------------------------------------------------------
    def attached(self, pid: int, *, session_id: str, follow_fork: bool, nonstop: bool) -> bool:
        """Record an attach the machine made; True when the process is newly traced for real
        or newly followed."""
        entry = self._taken.get(pid)
        news = entry is None or (entry.nonstop_only and not nonstop)
        if entry is None:
            entry = self._taken[pid] = TakenProcess(
                pid, follow_fork=follow_fork, nonstop_only=nonstop
            )
            self._gone.discard(pid)
        elif entry.nonstop_only and not nonstop:
            entry.nonstop_only = False
        if session_id:
            entry.explicit.add(session_id)
            entry.attached_by.add(session_id)
        return news

    def launched(self, pid: int, *, session_id: str, session_name: str, follow_fork: bool) -> None:
        self._gone.discard(pid)
        self._taken[pid] = TakenProcess(
            pid,
            follow_fork=follow_fork,
            explicit={session_id},
            launched_by=session_id,
            launched_by_name=session_name,
            held=True,
        )

    def check_release(self, session_id: str, pid: int) -> TakenProcess:
        entry = self._taken.get(pid)
        if entry is None and pid in self._procs:
            raise FailedPrecondition(f"process {pid} was not launched by the broker: it runs")
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

    def session_ended(self, session_id: str) -> list[int]:
        """Drop the session's explicit needs; the launches it never released, to kill."""
        held: list[int] = []
        for entry in self._taken.values():
            entry.explicit.discard(session_id)
            entry.attached_by.discard(session_id)
            if entry.launched_by == session_id and entry.held:
                entry.held = False
                held.append(entry.pid)
        return held

    def needed_by(self, session_id: str) -> list[int]:
        """The processes ``session_id`` attached or launched and still needs."""
        return sorted(pid for pid, entry in self._taken.items() if session_id in entry.explicit)

    def drop_need(self, session_id: str, pid: int) -> bool:
        """The session no longer needs ``pid``; True when a launch it held must be released."""
        entry = self._taken.get(pid)
        if entry is None:
            return False
        entry.explicit.discard(session_id)
        entry.attached_by.discard(session_id)
        if entry.launched_by == session_id and entry.held:
            entry.held = False
            return True
        return False

    def exited(self, pid: int) -> set[str]:
        """The process ended; returns the sessions that needed it explicitly."""
        entry = self._taken.pop(pid, None)
        return set(entry.explicit) if entry is not None else set()

    def _adopt(self, pid: int) -> None:
        """A process appeared on its own (a followed fork): needed by whoever follows forks."""
        if pid in self._pins:
            return
        followers = {s for e in self._taken.values() if e.follow_fork for s in e.explicit}
        self._taken[pid] = TakenProcess(pid, follow_fork=True, explicit=followers)
        self._gone.discard(pid)

    def begin_detach(self, pid: int) -> list[int] | None:
        """Start letting ``pid`` go: its threads (forgotten here) or None when not taken.

        The caller drops the threads from placement and commits before the machine lets
        the process go, so nothing is written to them after; then ``end_detach``.
        """
        if self._taken.pop(pid, None) is None:
            return None
        self._gone.add(pid)
        self._detaching[pid] = asyncio.get_running_loop().create_future()
        return self.forget_process(pid)

    def end_detach(self, pid: int) -> None:
        self._detaching.pop(pid).set_result(None)

    async def wait_detached(self, pid: int) -> None:
        # A detach in flight must finish before the process is taken again, or the
        # mechanism would hand back threads it is about to let go.
        while (pending := self._detaching.get(pid)) is not None:
            await asyncio.shield(pending)

    async def close(self) -> None:
        """Wait for the detaches in flight (the mechanism's close lets the rest go)."""
        for fut in list(self._detaching.values()):
            with contextlib.suppress(Exception):
                await fut
