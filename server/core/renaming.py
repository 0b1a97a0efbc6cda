"""Requests made by name outlive an exec: resolved again in the new image (issue 13 item 4).

After an exec the old address space is gone. A request made by address means
nothing there and ends with ``target_exec``, as before; a process-scope request
made by name (``Resolved.by_name``) is resolved again in the new program, its
chunks are split again and the arbiter gets the same request (same id, seq,
priority) at its new address. Its owner hears ``TargetExec`` without a removal.
A name the new program does not have ends the request with ``target_exec``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import structlog

from hwbkptd.core.arch_port import Arch
from hwbkptd.core.errors import BrokerError
from hwbkptd.core.events import TargetExec
from hwbkptd.core.model import Scope
from hwbkptd.core.mutations import Mutations
from hwbkptd.core.names import Names

__all__ = ["Renamer"]

_log = structlog.get_logger("hwbkptd.broker")


class Renamer:
    def __init__(self, names: Names, arch: Arch, pools: Mapping[str, int]) -> None:
        self._names = names
        self._arch = arch
        self._pools = pools

    def after_exec(self, m: Mutations, pid: int) -> None:
        """Re-resolve ``pid``'s requests made by name; remove the others (``target_exec``)."""
        self._names.forget(pid)
        for rid in m.requests.of_process(pid):
            if not self._moved(m, rid, pid):
                m.remove(rid, "target_exec", TargetExec(pid=pid))

    def _moved(self, m: Mutations, rid: int, pid: int) -> bool:
        record = m.requests[rid]
        accepted = record.accepted
        old = accepted.resolved
        if old is None or not old.by_name or accepted.scope is not Scope.PROCESS:
            return False
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
