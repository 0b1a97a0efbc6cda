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

from hwbkptd.core.broker_types import BreakpointSpec, BreakpointView
from hwbkptd.core.clock import Clock, Timer
from hwbkptd.core.errors import BrokerError
from hwbkptd.core.model import DEFAULT_PRIORITY, PendingReason, RequestState
from hwbkptd.core.names import Names, NotMappedYet

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
    """The waiting requests, by id. ``place`` is the broker's: once the name resolves (or
    resolving fails for another reason than the module not being mapped) it validates the
    request again and creates it under the waiting id, or ends it telling its owner why
    (process gone, session gone, a name the request cannot take). Either way the entry
    leaves this table."""

    def __init__(
        self,
        *,
        names: Names | None,
        clock: Clock,
        place: Callable[[WaitingName], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        alive: Callable[[str], bool],
    ) -> None:
        self._names = names
        self._clock = clock
        self._place = place
        self._spawn = spawn
        #: Whether a session id still names a session (a closed one's names stop waiting).
        self._alive = alive
        self._waiting: dict[int, WaitingName] = {}
        self._timer: Timer | None = None
        self._placing: set[int] = set()

    def __contains__(self, rid: object) -> bool:
        return rid in self._waiting

    def get(self, rid: int) -> WaitingName | None:
        return self._waiting.get(rid)

    def of_session(self, session_id: str) -> list[WaitingName]:
        return [w for w in self._waiting.values() if w.session_id == session_id]

    def add(self, entry: WaitingName) -> None:
        self._waiting[entry.id] = entry
        self._arm()

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

    def _arm(self) -> None:
        if self._timer is None and self._waiting:
            self._timer = self._clock.call_later(POLL_SECONDS, self._poll)

    def _poll(self) -> None:
        self._timer = None
        names = self._names
        for entry in list(self._waiting.values()):
            if not self._alive(entry.session_id):
                self.pop(entry.id)
                continue
            if entry.id in self._placing or names is None:
                continue
            spec = entry.spec
            try:
                names.resolve(spec.scope, spec.pid, spec.symbol, spec.access)
            except NotMappedYet:
                continue
            except BrokerError as err:
                # The process is gone, or the name now says something else: the broker's
                # place() will judge it and say why.
                _log.info("waiting_name_unresolvable", breakpoint_id=entry.id, error=str(err))
            self._placing.add(entry.id)
            self._spawn(self._placed(entry))
        self._arm()

    async def _placed(self, entry: WaitingName) -> None:
        try:
            await self._place(entry)
        finally:
            self._placing.discard(entry.id)
            self.pop(entry.id)
