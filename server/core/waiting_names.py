"""Requests that name a library not loaded yet: PENDING, reason UNRESOLVED (issue 13 item 5).

``libnamed_lib.so!lib_counter`` before the program ``dlopen``s the library cannot be
split into chunks: there is no address yet. Such a request waits here, outside the
arbiter (which places requests by their chunks), with its id already given to the
client. While any name waits, the broker watches the mappings: every ``POLL_SECONDS``
(through the core's Clock) it asks ``Names.resolve`` again, which reads the process's
mappings; once the module is mapped the request is placed as any other, under the same
id (``place``), and its owner hears the state change. Its process ending, or its session
ending, drops it. See docs/decisions.md "Names".
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from hwbkptd.core.audit import audit
from hwbkptd.core.broker_types import BreakpointSpec, BreakpointView
from hwbkptd.core.clock import Clock, Timer
from hwbkptd.core.errors import BrokerError, FailedPrecondition, NotFound
from hwbkptd.core.events import Removed, RemovedReason
from hwbkptd.core.model import DEFAULT_PRIORITY, PendingReason, RequestState
from hwbkptd.core.names import Names, NotMappedYet
from hwbkptd.core.sessions import Session, SessionTable

__all__ = ["POLL_SECONDS", "WaitingName", "WaitingNames"]

#: How often the mappings of a process with a waiting name are read again.
POLL_SECONDS = 0.02

_log = structlog.get_logger("hwbkptd.broker")


@dataclass(slots=True)
class WaitingName:
    id: int
    session_id: str
    session_name: str
    #: The spec as asked (pid filled in); validated except for what needs the address.
    spec: BreakpointSpec


class WaitingNames:
    """The waiting requests, by id, and the calls that touch them. ``set_under`` is the
    broker's SetBreakpoint under a given id: once a name resolves (or resolving fails for
    another reason than the module not being mapped) it validates the request again and
    creates it, or the request ends, its owner told why (``removed``: ``target_exited``,
    ``unresolved``). Either way it leaves this table."""

    def __init__(
        self,
        *,
        names: Names | None,
        clock: Clock,
        sessions: SessionTable,
        set_under: Callable[[str, BreakpointSpec, int], Coroutine[Any, Any, BreakpointView]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._names = names
        self._clock = clock
        self._sessions = sessions
        self._set_under = set_under
        self._spawn = spawn
        self._waiting: dict[int, WaitingName] = {}
        self._timer: Timer | None = None
        self._placing: set[int] = set()

    def __contains__(self, rid: object) -> bool:
        return rid in self._waiting

    def get(self, rid: int) -> WaitingName | None:
        return self._waiting.get(rid)

    # --- the session calls ---------------------------------------------------------------
    def wait(self, session: Session, spec: BreakpointSpec, rid: int) -> BreakpointView:
        """SetBreakpoint of a name whose module is not mapped: it waits under ``rid``."""
        entry = WaitingName(rid, session.id, session.name, spec)
        self._waiting[rid] = entry
        self._arm()
        audit("breakpoint_set", session, breakpoint_id=rid, waits_for=spec.symbol)
        return self.view(entry)

    def views(self, session: Session) -> list[BreakpointView]:
        return [self.view(w) for w in self._waiting.values() if w.session_id == session.id]

    def check_modify(self, session: Session, rid: int) -> None:
        """FAILED_PRECONDITION for a ModifyBreakpoint of a waiting request."""
        if self._owns(session, rid):
            raise FailedPrecondition(f"breakpoint {rid} waits for its module to be loaded")

    def remove(self, session: Session, rid: int) -> bool:
        """RemoveBreakpoint of a waiting request (True), or not one (False)."""
        if not self._owns(session, rid):
            return False
        self.pop(rid)
        session.emit(rid, Removed(reason="client"))
        audit("breakpoint_removed", session, breakpoint_id=rid, reason="client")
        return True

    def _owns(self, session: Session, rid: int) -> bool:
        entry = self._waiting.get(rid)
        return entry is not None and entry.session_id == session.id

    # --- the table -----------------------------------------------------------------------
    def pop(self, rid: int) -> WaitingName | None:
        entry = self._waiting.pop(rid, None)
        if not self._waiting and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return entry

    def close(self) -> None:
        self._waiting.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def view(self, entry: WaitingName) -> BreakpointView:
        spec = entry.spec
        return BreakpointView(
            id=entry.id,
            session_name=entry.session_name,
            spec=spec,
            state=RequestState.PENDING,
            reason=PendingReason.UNRESOLVED,
            installed_tids=(),
            pending_tids=(),
            chunks=(),
            hit_count=0,
            reported_count=0,
            priority=spec.priority if spec.priority is not None else DEFAULT_PRIORITY,
        )

    # --- watching the mappings -----------------------------------------------------------
    def _arm(self) -> None:
        if self._timer is None and self._waiting:
            self._timer = self._clock.call_later(POLL_SECONDS, self._poll)

    def _poll(self) -> None:
        self._timer = None
        names = self._names
        for entry in list(self._waiting.values()):
            if self._sessions.by_id(entry.session_id) is None:
                self.pop(entry.id)  # its session ended: nobody waits for it
                continue
            if entry.id in self._placing or names is None:
                continue
            spec = entry.spec
            try:
                names.resolve(spec.scope, spec.pid, spec.symbol, spec.access)
            except NotMappedYet:
                continue
            except BrokerError as err:
                # The process is gone, or the name now says something else: placing it
                # judges it and says why.
                _log.info("waiting_name_unresolvable", breakpoint_id=entry.id, error=str(err))
            self._placing.add(entry.id)
            self._spawn(self._place(entry))
        self._arm()

    async def _place(self, entry: WaitingName) -> None:
        try:
            session = self._sessions.by_id(entry.session_id)
            if session is None:
                return
            try:
                await self._set_under(session.token, entry.spec, entry.id)
            except BrokerError as err:
                gone = isinstance(err, NotFound) and err.field == "spec.pid"
                reason: RemovedReason = "target_exited" if gone else "unresolved"
                _log.info(
                    "waiting_name_ended", breakpoint_id=entry.id, reason=reason, error=str(err)
                )
                session.emit(entry.id, Removed(reason=reason))
        finally:
            self._placing.discard(entry.id)
            self.pop(entry.id)
