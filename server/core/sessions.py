"""Sessions: names, secret tokens, leases and the one event stream (DESIGN section 6).

A session lives while its event stream is attached. Without one (right after
it is opened, or after its client went away) its lease runs; any call with its
token starts the lease again, and when the lease ends the owner's
``on_expire`` callback removes it. A newer stream ends the older one.

A stream never ends with OK: a reconnect loop must tell why it ended. Replaced by a
newer stream of the session: ABORTED. Its session closed: FAILED_PRECONDITION (and
UNAVAILABLE when the broker shuts down, which a client may retry elsewhere or later).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

from hwbkptd.core.activity import Activity
from hwbkptd.core.clock import Clock, Timer
from hwbkptd.core.errors import Aborted, BrokerError, FailedPrecondition, NotFound
from hwbkptd.core.eventlog import MAX_BATCH, EventLog
from hwbkptd.core.events import Event, EventKind, Hit
from hwbkptd.core.policy import check_session_owner

if TYPE_CHECKING:
    from hwbkptd.core.broker_types import Identity
    from hwbkptd.core.limits import MemoryBudget

__all__ = ["STREAM_REPLACED", "Session", "SessionTable"]

#: How a stream that a newer stream of its session replaced ends.
STREAM_REPLACED = "the event stream was replaced by a newer stream of this session"

_TOKEN_BYTES = 24


class Session:
    def __init__(
        self,
        *,
        session_id: str,
        name: str,
        token: str,
        identity: Identity,
        lease_seconds: float,
        log: EventLog,
        clock: Clock,
        on_expire: Callable[[Session], None],
        activity: Activity | None = None,
    ) -> None:
        self.id = session_id
        self.name = name
        self.token = token
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.log = log
        #: Ids of this session's live requests.
        self.requests: set[int] = set()
        #: Being removed: calls with its token fail, its last events are still queued.
        self.ending = False
        self.closed = False
        #: How the session's stream ends once it has handed out what was queued.
        self.close_error: BrokerError = FailedPrecondition("the session was closed")
        self._clock = clock
        self._on_expire = on_expire
        self._activity = activity if activity is not None else Activity()
        self._stream = 0
        self._streams = 0
        self._wake: asyncio.Event | None = None
        self._lease: Timer | None = None
        self.lease_deadline: float | None = None

    # --- events -----------------------------------------------------------------
    def emit(self, breakpoint_id: int, kind: EventKind, time_ns: int | None = None) -> None:
        when = self._clock.time_ns() if time_ns is None else time_ns
        queued = self.log.append(breakpoint_id, kind, when) is not None
        if queued and self._wake is not None:
            self._wake.set()
        if self._activity:
            self._activity.event(self.id, self.name, breakpoint_id, kind, queued)

    def emit_hits(self, items: list[tuple[int, Hit, int]]) -> None:
        """``emit`` of each ``(breakpoint_id, hit, time_ns)``, in order, in one pass."""
        if self._activity:
            for bid, hit, t in items:  # observers are told per event, in order
                self.emit(bid, hit, t)
            return
        if self.log.extend_hits(items) and self._wake is not None:
            self._wake.set()

    @property
    def attached(self) -> bool:
        return self._stream != 0

    async def stream(self, after_seq: int) -> AsyncIterator[list[Event]]:
        """Batches of events numbered above ``after_seq``: the retained ones, then live ones.

        Ends when a newer stream attaches (raising ``Aborted``) or when the session is
        closed (after handing out what was queued, raising ``close_error``). However it
        ends, the lease starts.
        """
        number, wake = self._attach()
        cursor = after_seq
        try:
            while self._stream == number:
                batch = self.log.take(cursor, self._clock.time_ns(), MAX_BATCH)
                if batch:
                    cursor = batch[-1].seq
                    if self._activity:
                        self._activity.delivered(self.id, self.name, batch, self._clock.time_ns())
                    yield batch
                    continue
                if self.closed:
                    raise self.close_error
                wake.clear()
                await wake.wait()
            raise Aborted(STREAM_REPLACED)
        finally:
            self._detach(number)

    def _attach(self) -> tuple[int, asyncio.Event]:
        self._streams += 1
        number = self._streams
        if self._wake is not None:
            # The older stream wakes up, sees it is no longer current and ends.
            self._wake.set()
        self._stream = number
        self._wake = asyncio.Event()
        self.cancel_lease()
        return number, self._wake

    def _detach(self, number: int) -> None:
        if self._stream != number:
            return
        self._stream = 0
        self._wake = None
        self.start_lease()

    # --- lease ------------------------------------------------------------------
    def start_lease(self) -> None:
        """(Re)start the lease clock unless a stream is attached."""
        if self.ending or self.closed or self.attached:
            return
        self.cancel_lease()
        self.lease_deadline = self._clock.monotonic() + self.lease_seconds
        self._lease = self._clock.call_later(self.lease_seconds, self._expire)

    def _expire(self) -> None:
        self._lease = None
        if not self.ending and not self.closed and not self.attached:
            self._on_expire(self)

    def cancel_lease(self) -> None:
        if self._lease is not None:
            self._lease.cancel()
            self._lease = None
        self.lease_deadline = None

    def close(self, error: BrokerError | None = None) -> None:
        """No more calls: the stream hands out what is queued, then ends with ``error``
        (default: FAILED_PRECONDITION "the session was closed")."""
        if error is not None:
            self.close_error = error
        self.closed = True
        self.cancel_lease()
        if self._wake is not None:
            self._wake.set()


class SessionTable:
    """Every live session by token and by id."""

    def __init__(
        self,
        clock: Clock,
        on_expire: Callable[[Session], None],
        activity: Activity | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        self._clock = clock
        self._budget = budget
        self._on_expire = on_expire
        #: Told of every session opened and removed, and of every session's events.
        self.activity = activity if activity is not None else Activity()
        self._by_token: dict[str, Session] = {}
        self._by_id: dict[str, Session] = {}
        self._count = 0

    def open(
        self,
        name: str,
        *,
        identity: Identity,
        lease_seconds: float,
        hit_buffer: int,
        retention: int,
    ) -> Session:
        self._count += 1
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        session = Session(
            session_id=f"s{self._count}",
            name=name,
            token=token,
            identity=identity,
            lease_seconds=lease_seconds,
            log=EventLog(hit_buffer=hit_buffer, retention=retention, budget=self._budget),
            clock=self._clock,
            on_expire=self._on_expire,
            activity=self.activity,
        )
        self._by_token[token] = session
        self._by_id[session.id] = session
        self.activity.session_opened(session.id, name)
        session.start_lease()
        return session

    def get(self, token: str) -> Session:
        """The session of a token; every call of a session is a sign of life."""
        session = self._by_token.get(token)
        if session is None or session.ending or session.closed:
            raise NotFound("token", "no such session")
        check_session_owner(session.identity)
        session.start_lease()
        return session

    def by_id(self, session_id: str) -> Session | None:
        return self._by_id.get(session_id)

    def remove(self, session: Session) -> None:
        """Forget a session: its token stops working. Its stream ends on ``session.close()``."""
        session.ending = True
        session.cancel_lease()
        self._by_token.pop(session.token, None)
        if self._by_id.pop(session.id, None) is not None:
            self.activity.session_closed(session.id, session.name)
        session.log.release()

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_id.values()))

    def count_of(self, identity_name: str) -> int:
        """How many live sessions ``identity_name`` has open."""
        return sum(1 for s in self._by_id.values() if s.identity.name == identity_name)

    def __len__(self) -> int:
        return len(self._by_id)
