"""What the machine tells the broker: hits, refusals, threads and processes coming and going.

``MachineNews`` is the ``MechanismSink`` the mechanism is started with; it runs
on the event loop (the mechanisms hand their news over from their own threads:
the ptrace tracer thread, the perf ring readers). Hits go to ``HitRouter``;
everything else changes the rooms through ``Mutations`` and commits in the
background.
"""

from __future__ import annotations

from collections.abc import Sequence

from hwbkptd.core.events import TargetExec, TargetExited
from hwbkptd.core.mechanism import HitReport, Refusal
from hwbkptd.core.model import CPU_CONTEXT
from hwbkptd.core.mutations import Mutations
from hwbkptd.core.names import Names
from hwbkptd.core.renaming import Renamer
from hwbkptd.core.routing import HitRouter
from hwbkptd.core.sessions import SessionTable

__all__ = ["MachineNews"]


class MachineNews:
    def __init__(
        self,
        *,
        mutations: Mutations,
        router: HitRouter,
        sessions: SessionTable,
        names: Names | None = None,
        renamer: Renamer | None = None,
    ) -> None:
        self._m = mutations
        self._router = router
        self._sessions = sessions
        #: Told when a process's mappings become stale (exec, exit).
        self._names = names
        #: Re-resolves requests made by name after an exec (issue 13).
        self._renamer = renamer

    def on_hits(self, hits: Sequence[HitReport]) -> None:
        self._router.on_hits(hits)

    def on_hits_lost(self, tid: int, count: int) -> None:
        if count > 0 and (tid == CPU_CONTEXT or tid in self._m.processes.threads):
            self._router.on_hits_lost(tid, count)

    def on_thread_started(self, pid: int, tid: int) -> None:
        if self._m.add_thread(pid, tid):
            self._m.spawn(self._m.commit())

    def on_thread_exited(self, pid: int, tid: int, exit_code: int) -> None:
        m = self._m
        pid_ = m.processes.threads.get(tid)
        if pid_ is None:
            return
        gone = TargetExited(pid=pid_, tid=tid, exit_code=exit_code)
        for rid in m.requests.of_thread(tid):
            m.remove(rid, "target_exited", gone)
        m.drop_thread(tid)
        m.spawn(m.commit_and_sweep())

    def on_process_exited(self, pid: int, exit_code: int) -> None:
        m = self._m
        if self._names is not None:
            self._names.forget(pid)
        gone = TargetExited(pid=pid, tid=0, exit_code=exit_code)
        for rid in m.requests.of_process(pid):
            m.remove(rid, "target_exited", gone)
        m.forget_process(pid)
        # Sessions that attached or launched it hear of its end even without a request.
        for session_id in sorted(m.processes.exited(pid)):
            session = self._sessions.by_id(session_id)
            if session is not None:
                session.emit(0, gone)
        m.spawn(m.commit())

    def on_process_exec(self, pid: int) -> None:
        m = self._m
        if self._renamer is not None:
            # A request made by name is resolved again in the new program.
            self._renamer.after_exec(m, pid, lambda: m.spawn(m.commit_and_sweep()))
        else:
            # The address space is gone: an address means nothing in the new program.
            for rid in m.requests.of_process(pid):
                m.remove(rid, "target_exec", TargetExec(pid=pid))
        m.spawn(m.commit_and_sweep())

    def on_refusals(self, refusals: Sequence[Refusal]) -> None:
        if self._m.committer.note_refusals(refusals):
            self._m.spawn(self._m.commit())
