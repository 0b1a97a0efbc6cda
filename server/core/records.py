"""The broker's own record of each live request, indexed by id, thread and process."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hwbkptd.core.broker_types import BreakpointSpec
from hwbkptd.core.hits import HitState
from hwbkptd.core.model import (
    DEFAULT_PRIORITY,
    Access,
    Chunk,
    Request,
    Scope,
)
from hwbkptd.core.sessions import Session

__all__ = ["Record", "RequestBook", "new_record"]


@dataclass(slots=True, eq=False)
class Record:
    id: int
    session: Session
    #: The spec as accepted: pid, tid, priority and length filled in. Its priority,
    #: action and filter are those at creation; a modify changes ``request`` only.
    accepted: BreakpointSpec
    #: What the arbiter holds for it: the owner of priority, action and filter.
    request: Request
    hits: HitState

    @property
    def spec(self) -> BreakpointSpec:
        """The spec as it stands now (after any modify)."""
        request = self.request
        return dataclasses.replace(
            self.accepted, priority=request.priority, action=request.action, filter=request.filter
        )


class RequestBook:
    def __init__(self) -> None:
        self._by_id: dict[int, Record] = {}
        self._by_pid: dict[int, set[int]] = {}
        self._by_tid: dict[int, set[int]] = {}

    def add(self, record: Record) -> None:
        request = record.request
        self._by_id[record.id] = record
        if request.scope is not Scope.KERNEL:
            self._by_pid.setdefault(request.pid, set()).add(record.id)
        if request.scope is Scope.THREAD:
            self._by_tid.setdefault(request.tid, set()).add(record.id)

    def pop(self, rid: int) -> Record:
        record = self._by_id.pop(rid)
        request = record.request
        for index, key in ((self._by_pid, request.pid), (self._by_tid, request.tid)):
            ids = index.get(key)
            if ids is not None:
                ids.discard(rid)
                if not ids:
                    del index[key]
        return record

    def get(self, rid: int) -> Record | None:
        return self._by_id.get(rid)

    def __getitem__(self, rid: int) -> Record:
        return self._by_id[rid]

    def __contains__(self, rid: object) -> bool:
        return rid in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def of_process(self, pid: int) -> list[int]:
        """Ids of the process- and thread-scope requests of a process, oldest first."""
        return sorted(self._by_pid.get(pid, ()))

    def has_process(self, pid: int) -> bool:
        """True while a process- or thread-scope request names the process."""
        return pid in self._by_pid

    def of_thread(self, tid: int) -> list[int]:
        """Ids of the thread-scope requests of a thread, oldest first."""
        return sorted(self._by_tid.get(tid, ()))


def new_record(
    rid: int,
    session: Session,
    spec: BreakpointSpec,
    chunks: tuple[Chunk, ...],
    *,
    read_emulated: bool,
    value: bytes,
) -> Record:
    """The record of a new request; ``spec`` is validated and filled in, ``rid`` is its seq."""
    request = Request(
        id=rid,
        seq=rid,
        session_id=session.id,
        session_name=session.name,
        scope=spec.scope,
        pid=spec.pid,
        tid=spec.tid,
        address=spec.address,
        length=spec.length,
        access=spec.access,
        priority=spec.priority if spec.priority is not None else DEFAULT_PRIORITY,
        chunks=chunks,
        action=spec.action,
        filter=spec.filter,
        nonstop=spec.nonstop,
        call_chain=spec.call_chain,
    )
    state = HitState(emulated_read=read_emulated and spec.access is Access.READ, last_value=value)
    return Record(id=rid, session=session, accepted=spec, request=request, hits=state)
