"""Log lines a client can cause, at a bounded rate (issue 12).

Every refused call wrote one line: a client calling in a loop made the broker write
about 1,000 lines a second. :class:`LineLimiter` lets through ``burst`` lines and then
``per_second`` a second (a token bucket on the core's Clock); the lines it holds back
are counted by kind, and one summary line says how many ("N similar lines
suppressed") when the next line gets through or, at the latest, a second after the
first one held back. The summary goes through the same ``write`` as the lines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from hwbkptd.core.clock import Clock, Timer
from hwbkptd.core.limits import TokenBucket

__all__ = ["SUMMARY_DELAY", "LineLimiter", "Summary"]

#: Seconds after the first held-back line that its summary is written at the latest.
SUMMARY_DELAY = 1.0

#: (kind -> lines held back)
Summary = dict[str, int]


class LineLimiter:
    """``allow(kind)`` says whether to write a line now; ``summarize`` gets what was held."""

    def __init__(
        self,
        clock: Clock,
        summarize: Callable[[Summary], None],
        *,
        per_second: float = 20.0,
        burst: int = 50,
    ) -> None:
        self._clock = clock
        self._summarize = summarize
        self._bucket = TokenBucket(per_second, burst, clock)
        self._held: Summary = {}
        self._timer: Timer | None = None
        # Refusals are logged from the event loop and from grpc's thread pool (a
        # synchronous handler's), so the bucket and the counts are shared under a lock.
        self._lock = threading.Lock()

    def allow(self, kind: str) -> bool:
        with self._lock:
            if self._bucket.take():
                held = self._take_held()
            else:
                self._held[kind] = self._held.get(kind, 0) + 1
                if self._timer is None:
                    self._timer = self._schedule()
                return False
        if held:
            self._summarize(held)
        return True

    def flush(self) -> None:
        """Write the summary of what is held back now (the timer does this by itself)."""
        with self._lock:
            held = self._take_held()
        if held:
            self._summarize(held)

    def _take_held(self) -> Summary:
        held, self._held = self._held, {}
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return held

    def _schedule(self) -> Timer | None:
        try:
            return self._clock.call_later(SUMMARY_DELAY, self.flush)
        except RuntimeError:
            # No event loop in this thread: the summary waits for the next line let through.
            return None
