"""Time as the core sees it, behind a protocol so tests can hold it still.

Two readings: a monotonic one for leases and halt deadlines (never jumps with
the wall clock) and a wall-clock one in nanoseconds for event timestamps. And
one way to wait: every core timer (session leases, halt timeouts, the retry of
slots held outside the broker) is scheduled with ``call_later``, so a test on a
``ManualClock`` fires them by moving time, never by sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "ManualClock", "ManualTimer", "SystemClock", "Timer"]


class Timer(Protocol):
    def cancel(self) -> None:
        """The callback will not run (nothing happens if it already did)."""


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""

    def time_ns(self) -> int:
        """Wall-clock nanoseconds since the epoch, for event timestamps."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` once, ``delay`` seconds of ``monotonic`` time from now."""


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time_ns(self) -> int:
        return time.time_ns()

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        # The loop's timers run on its own monotonic clock, the same one as ``monotonic``.
        return asyncio.get_running_loop().call_later(delay, callback)


class ManualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told to, and fires its timers as it passes them.

    ``advance`` is synchronous: before it returns, every timer due by the new time
    has run, in deadline order (timers due at the same moment in the order they
    were scheduled), each with the clock reading its own deadline. A timer that a
    callback schedules runs in the same ``advance`` if it falls due by then. A
    callback's exception propagates out of ``advance``, leaving the clock at that
    callback's deadline and the later timers waiting. Work a callback hands to the
    event loop (a task) is not run here: await it as the code offers (for the
    broker, ``Broker.finish_background_work``).
    """

    def __init__(self, start: float = 1000.0, wall_ns: int = 1_700_000_000_000_000_000) -> None:
        self._now = start
        self._wall_ns = wall_ns
        self._timers: list[tuple[float, int, ManualTimer]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def time_ns(self) -> int:
        return self._wall_ns + int(self._now * 1e9)

    def call_later(self, delay: float, callback: Callable[[], object]) -> ManualTimer:
        # Like the event loop, a delay of zero or less means "as soon as time moves".
        timer = ManualTimer(self._now + max(0.0, delay), callback)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go backwards")
        until = self._now + seconds
        while self._timers and self._timers[0][0] <= until:
            when, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            timer.cancelled = True  # fired: a late cancel() changes nothing
            self._now = when
            timer.callback()
        self._now = until

    def pending(self) -> int:
        """How many timers are scheduled and neither run nor cancelled."""
        return sum(not timer.cancelled for _, _, timer in self._timers)

    def next_deadline(self) -> float | None:
        """When the earliest live timer is due, if any."""
        live = [when for when, _, timer in self._timers if not timer.cancelled]
        return min(live, default=None)
