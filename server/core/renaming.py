"""Requests made by name outlive an exec: resolved again in the new image (issue 13 item 4).

After an exec the old address space is gone. A request made by address means
nothing there and ends with ``target_exec``, as before; a process-scope request
made by name (``Resolved.by_name``) is resolved again in the new program, its
chunks are split again and the arbiter gets the same request (same id, seq,
priority) at its new address. Its owner hears ``TargetExec`` without a removal.
A name the new program does not have ends the request with ``target_exec``.

Exec is learned from perf's exec record where the process is not ptraced; the kernel
writes it before it maps the new program, so a first resolution can find nothing mapped.
A name that does not resolve is tried again every ``RETRY_SECONDS`` (the core's clock)
for ``RETRY_SECONDS x RETRIES`` before its request ends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import structlog

from hwbkptd.core.arch_port import Arch
from hwbkptd.core.clock import Clock
from hwbkptd.core.errors import BrokerError
from hwbkptd.core.events import TargetExec
from hwbkptd.core.model import Scope
from hwbkptd.core.mutations import Mutations
from hwbkptd.core.names import Names

__all__ = ["RETRIES", "RETRY_SECONDS", "Renamer"]

#: How often, and how many times, a name that did not resolve after an exec is tried again.
RETRY_SECONDS = 0.01
RETRIES = 20

_log = structlog.get_logger("hwbkptd.broker")


class Renamer:
    def __init__(self, names: Names, arch: Arch, pools: Mapping[str, int], clock: Clock) -> None:
        self._names = names
        self._arch = arch
        self._pools = pools
        self._clock = clock

    def after_exec(self, m: Mutations, pid: int, commit: Callable[[], None]) -> None:
        """Re-resolve ``pid``'s requests made by name; remove the others (``target_exec``).
        A name that does not resolve yet is tried again later; ``commit`` runs after each
        later try that changed something."""
        self._names.forget(pid)
        waiting: list[int] = []
        for rid in m.requests.of_process(pid):
            if self._by_name(m, rid):
                if not self._moved(m, rid, pid):
                    waiting.append(rid)
            else:
                m.remove(rid, "target_exec", TargetExec(pid=pid))
        if waiting:
            self._retry_later(m, pid, waiting, RETRIES, commit)

    def _retry_later(
        self, m: Mutations, pid: int, rids: list[int], left: int, commit: Callable[[], None]
    ) -> None:
        def retry() -> None:
            # Each may have ended meanwhile (its session, its process, a removal).
            ours = set(m.requests.of_process(pid))
            still = [r for r in rids if r in ours]
            waiting = [r for r in still if not self._moved(m, r, pid)]
            if waiting and left > 1:
                self._retry_later(m, pid, waiting, left - 1, commit)
            else:
                for rid in waiting:
                    m.remove(rid, "target_exec", TargetExec(pid=pid))
                waiting = []
            if len(waiting) < len(still):
                commit()

        self._clock.call_later(RETRY_SECONDS, retry)

    @staticmethod
    def _by_name(m: Mutations, rid: int) -> bool:
        accepted = m.requests[rid].accepted
        old = accepted.resolved
        return old is not None and old.by_name and accepted.scope is Scope.PROCESS

    def _moved(self, m: Mutations, rid: int, pid: int) -> bool:
        record = m.requests[rid]
        accepted = record.accepted
        try:
            new = self._names.resolve(accepted.scope, pid, accepted.symbol, accepted.access)
            chunks = self._arch.split(
                new.address, accepted.length, accepted.access, kernel=False, pools=self._pools
            )
        except BrokerError as err:
            _log.info("rename_failed", breakpoint_id=rid, location=accepted.symbol, error=str(err))
            return False
        request = dataclasses.replace(record.request, address=new.address, chunks=chunks)
        delta = m.arbiter.replace_request(request)
        record.request = request
        record.accepted = dataclasses.replace(accepted, address=new.address, resolved=new)
        # The old value was the old program's: the first hit in the new one has no "before".
        record.hits.last_value = b""
        m.committer.absorb(delta)
        record.session.emit(rid, TargetExec(pid=pid))
        _log.info("renamed_after_exec", breakpoint_id=rid, address=hex(new.address))
        return True
