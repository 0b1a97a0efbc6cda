"""The broker's limits: what one client may make it hold or do (issue 12, DESIGN section 7).

Every limit is in :class:`Limits` (hwbkptd flags set them, ``DescribeMachine`` lists
them). A breach is RESOURCE_EXHAUSTED (a quota: sessions, streams, calls, requests,
memory) or INVALID_ARGUMENT (a field asks for more than allowed: a name, a hit
buffer), and the message names the limit and its flag, so an operator knows what to
raise. Per-identity limits key on ``Identity.name``.

The parts with state are here too, all pure (time from the core's Clock):
:class:`TokenBucket` (calls per second), :class:`IdentityQuotas` (sessions, streams
and calls per identity) and :class:`MemoryBudget` (the events every session holds,
buffered and kept for replay, plus each session's own cost).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol

from hwbkptd.core.clock import Clock
from hwbkptd.core.errors import InvalidArgument, ResourceExhausted

__all__ = [
    "EVENT_BYTES",
    "PRESSURE_HIT_FLOOR",
    "SESSION_BYTES",
    "STREAM_BYTES",
    "IdentityQuotas",
    "LimitInfo",
    "Limits",
    "MemoryBudget",
    "Shrinkable",
    "TokenBucket",
    "check_hit_buffer",
    "check_request_count",
]

#: What one buffered event costs the broker, measured with tracemalloc on a hit event
#: (an Event and its Hit with two 8-byte values): about 434 bytes, rounded up.
EVENT_BYTES = 450
#: What one open session costs without events (Session, EventLog, token, table entries):
#: about 1.2 KB measured, rounded up for its requests' bookkeeping.
SESSION_BYTES = 2048
#: What one open streaming call costs: what its sender may buffer for a client that does
#: not read (HTTP/2's 64 KiB window) and the call's own state. Measured with
#: bench/abuse.py at budgets of 64, 128 and 256 MiB: the broker's growth was about 78 MiB
#: above what its events explain, for 1,000 never-read streams (and their sessions).
STREAM_BYTES = 80 * 1024
#: Under memory pressure a session keeps taking hits only while it has fewer than this
#: many undelivered: a client that reads keeps its events, one that does not loses its new
#: hits (counted in HitsDropped) instead of the others losing theirs.
PRESSURE_HIT_FLOOR = 64
#: The budget counts as relieved again once use falls below this share of it, so the
#: pressure state does not flap with every event.
_RELIEF = 0.9

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LimitInfo:
    """One limit as ``info`` shows it."""

    name: str
    value: int | float
    flag: str
    what: str


@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit, with its default. Each field has an ``hwbkptd`` flag (``_FLAGS``)."""

    #: The largest request message the server reads (gRPC's receive limit). 16 MiB lets
    #: the broker read an oversized field and name it; a bigger message is refused by
    #: gRPC itself with RESOURCE_EXHAUSTED.
    max_message_bytes: int = 16 * _MIB
    #: Characters in a session name.
    max_name_length: int = 128
    #: Breakpoint requests one session may hold.
    max_requests_per_session: int = 1024
    #: Sessions one identity may have open at once (leases included).
    max_sessions_per_identity: int = 1024
    #: The most hit events a session may ask to buffer (OpenSession.hit_buffer).
    max_hit_buffer: int = 65_536
    #: Delivered events each session keeps for replay after a reconnect.
    replay_events: int = 16_384
    #: Streaming calls (StreamEvents, ResumeThreadsStream) one identity may have open.
    max_streams_per_identity: int = 1024
    #: Calls per second one identity may start (a token bucket), and its burst.
    calls_per_second: float = 5000.0
    call_burst: int = 5000
    #: Memory for all sessions together: their events (buffered and replay) and themselves.
    memory_budget_bytes: int = 256 * _MIB
    #: Log lines of refused calls and errors a second (all clients together), and the
    #: burst; the rest are counted in an "N similar lines suppressed" line.
    refusal_log_per_second: float = 20.0
    refusal_log_burst: int = 50

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "replay_events":
                if value < 0:
                    raise ValueError("replay_events must not be negative")
            elif not value > 0:
                raise ValueError(f"{f.name} must be greater than 0")

    def describe(self) -> tuple[LimitInfo, ...]:
        """Every limit with its flag and what it bounds, in declaration order."""
        return tuple(
            LimitInfo(f.name, getattr(self, f.name), _FLAGS[f.name][0], _FLAGS[f.name][1])
            for f in fields(self)
        )


#: field -> (hwbkptd flag, what it bounds)
_FLAGS: dict[str, tuple[str, str]] = {
    "max_message_bytes": ("--max-message-bytes", "bytes in one request message"),
    "max_name_length": ("--max-name-length", "characters in a session name"),
    "max_requests_per_session": ("--max-requests", "breakpoint requests per session"),
    "max_sessions_per_identity": ("--max-sessions", "open sessions per identity"),
    "max_hit_buffer": ("--max-hit-buffer", "hit events a session may ask to buffer"),
    "replay_events": ("--replay-events", "delivered events kept per session for replay"),
    "max_streams_per_identity": ("--max-streams", "open streaming calls per identity"),
    "calls_per_second": ("--calls-per-second", "calls per second per identity"),
    "call_burst": ("--call-burst", "calls an identity may make at once above the rate"),
    "memory_budget_bytes": ("--memory-budget", "bytes of events and sessions, all together"),
    "refusal_log_per_second": ("--refusal-log-rate", "log lines of refusals per second"),
    "refusal_log_burst": ("--refusal-log-burst", "log lines of refusals at once above the rate"),
}


def check_hit_buffer(hit_buffer: int, limits: Limits) -> None:
    """OpenSession.hit_buffer: 0 (the broker default) up to the limit."""
    if not 0 <= hit_buffer <= limits.max_hit_buffer:
        raise InvalidArgument(
            "hit_buffer",
            f"must be 0 (default) to {limits.max_hit_buffer} "
            f"(limit max_hit_buffer, hwbkptd --max-hit-buffer), got {hit_buffer}",
        )


def check_request_count(owned: int, identity_limit: int, identity: str, limits: Limits) -> None:
    """A session about to hold one more request: within its identity's and the broker's cap."""
    if owned >= identity_limit:
        raise ResourceExhausted(f"identity {identity!r} may hold at most {identity_limit} requests")
    if owned >= limits.max_requests_per_session:
        raise ResourceExhausted(
            f"a session may hold at most {limits.max_requests_per_session} requests "
            "(limit max_requests_per_session, hwbkptd --max-requests)"
        )


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; a call takes one."""

    __slots__ = ("_burst", "_clock", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()

    def take(self) -> bool:
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    @property
    def full(self) -> bool:
        """Refilled to its burst: forgetting it changes nothing."""
        now = self._clock.monotonic()
        return self._tokens + (now - self._last) * self._rate >= self._burst


#: Buckets kept before full ones (idle identities) are forgotten.
_MAX_IDLE_BUCKETS = 1024


class IdentityQuotas:
    """Per identity: open sessions, open streams and the calls-per-second bucket."""

    def __init__(self, limits: Limits, clock: Clock, budget: MemoryBudget | None = None) -> None:
        self._limits = limits
        self._clock = clock
        self._budget = budget
        self._sessions: dict[str, int] = {}
        self._streams: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}

    # --- calls per second ---------------------------------------------------------
    def admit_call(self, identity: str) -> None:
        bucket = self._buckets.get(identity)
        if bucket is None:
            if len(self._buckets) >= _MAX_IDLE_BUCKETS:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full}
            bucket = self._buckets[identity] = TokenBucket(
                self._limits.calls_per_second, self._limits.call_burst, self._clock
            )
        if not bucket.take():
            raise ResourceExhausted(
                f"identity {identity!r} is over {self._limits.calls_per_second:g} calls per "
                "second (limit calls_per_second, hwbkptd --calls-per-second); retry later"
            )

    # --- streams ------------------------------------------------------------------
    def open_stream(self, identity: str) -> Callable[[], None]:
        """Count a streaming call; returns what ends it (call it once, when it ends)."""
        count = self._streams.get(identity, 0)
        if count >= self._limits.max_streams_per_identity:
            raise ResourceExhausted(
                f"identity {identity!r} has {count} streams open, the most allowed "
                "(limit max_streams_per_identity, hwbkptd --max-streams)"
            )
        budget = self._budget
        if budget is not None:
            budget.check_stream()
            budget.stream_opened()
        self._streams[identity] = count + 1
        done = False

        def close() -> None:
            nonlocal done
            if not done:
                done = True
                _decrement(self._streams, identity)
                if budget is not None:
                    budget.stream_closed()

        return close

    def streams(self, identity: str) -> int:
        return self._streams.get(identity, 0)

    # --- sessions -----------------------------------------------------------------
    def check_session(self, identity: str) -> None:
        count = self._sessions.get(identity, 0)
        if count >= self._limits.max_sessions_per_identity:
            raise ResourceExhausted(
                f"identity {identity!r} has {count} sessions open, the most allowed "
                "(limit max_sessions_per_identity, hwbkptd --max-sessions); close some or "
                "let their leases end"
            )

    def session_opened(self, identity: str) -> None:
        self._sessions[identity] = self._sessions.get(identity, 0) + 1

    def session_ended(self, identity: str) -> None:
        _decrement(self._sessions, identity)

    def sessions(self, identity: str) -> int:
        return self._sessions.get(identity, 0)


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


class Shrinkable(Protocol):
    def drop_replay(self) -> None:
        """Let go of the delivered events kept for replay."""


class MemoryBudget:
    """The memory all sessions hold, estimated: events x EVENT_BYTES + sessions x
    SESSION_BYTES + open streams x STREAM_BYTES. Over the budget (``pressed``) the broker
    refuses new sessions, drops every session's replay, keeps none while pressed, and drops
    the new hits of sessions that do not read; it is relieved below 90 % of the budget."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.events = 0
        self.sessions = 0
        self.streams = 0
        #: Over the budget and not yet relieved.
        self.pressed = False
        self._logs: dict[int, Shrinkable] = {}
        self._relief = int(limit_bytes * _RELIEF)

    @property
    def used_bytes(self) -> int:
        return (
            self.events * EVENT_BYTES + self.sessions * SESSION_BYTES + self.streams * STREAM_BYTES
        )

    # --- events (the EventLogs call these) -------------------------------------------
    def add_events(self, count: int) -> None:
        self.events += count
        if not self.pressed and self.used_bytes > self.limit_bytes:
            self._press()

    def fits(self, count: int) -> bool:
        """Whether ``count`` more events keep the budget unpressed (no ``add_events`` of
        them would press it): a log may then take them at once."""
        return not self.pressed and self.used_bytes + count * EVENT_BYTES <= self.limit_bytes

    def remove_events(self, count: int) -> None:
        self.events -= count
        if self.pressed and self.used_bytes < self._relief:
            self.pressed = False

    # --- sessions ---------------------------------------------------------------------
    def check_session(self) -> None:
        """Refuse a new session while pressed, or when it would not fit."""
        if self.pressed or self.used_bytes + SESSION_BYTES > self.limit_bytes:
            raise ResourceExhausted(
                f"the sessions' memory budget is used up ({self.used_bytes // 1024} KiB of "
                f"{self.limit_bytes // 1024} KiB: {self.sessions} sessions, {self.events} "
                "events held; limit memory_budget_bytes, hwbkptd --memory-budget); "
                "try again when sessions end or read their events"
            )

    def session_opened(self, log: Shrinkable) -> None:
        self.sessions += 1
        self._logs[id(log)] = log
        if not self.pressed and self.used_bytes > self.limit_bytes:
            self._press()

    def session_ended(self, log: Shrinkable) -> None:
        if self._logs.pop(id(log), None) is not None:
            self.sessions -= 1
            self.remove_events(0)

    # --- streams (the admission interceptor, through IdentityQuotas) ---------------------
    def check_stream(self) -> None:
        """Refuse a stream only when sessions and streams alone would not fit: events can
        be shed under pressure, a stream's buffers cannot; so a client that reads can
        still reconnect while others' unread events press the budget."""
        fixed = self.sessions * SESSION_BYTES + (self.streams + 1) * STREAM_BYTES
        if fixed > self.limit_bytes:
            raise ResourceExhausted(
                f"the sessions' memory budget has no room for another stream ({self.streams} "
                f"streams and {self.sessions} sessions hold {fixed // 1024} KiB of "
                f"{self.limit_bytes // 1024} KiB; limit memory_budget_bytes, hwbkptd "
                "--memory-budget)"
            )

    def stream_opened(self) -> None:
        self.streams += 1
        if not self.pressed and self.used_bytes > self.limit_bytes:
            self._press()

    def stream_closed(self) -> None:
        self.streams -= 1
        self.remove_events(0)

    def _press(self) -> None:
        self.pressed = True
        # Replay is the memory that costs nobody a live event: it goes first, everywhere.
        for log in list(self._logs.values()):
            log.drop_replay()
