"""How often the event loop takes the tracer's batches: at once while traffic is light,
every window under load. A pure object: it is told the time, it keeps no clock.
"""

from __future__ import annotations

__all__ = [
    "BATCH_RATE",
    "BATCH_WINDOW",
    "BIG_BATCH",
    "MAX_BATCH_WINDOW",
    "RATE_PERIOD",
    "DeliveryPacing",
]

#: Events are delivered as they come while the loop wakes for them fewer than BATCH_RATE
#: times a second (at 1,000 hits/s, a hit reaches the sink in tens of microseconds);
#: more often, the loop wakes at most once per window and delivers what gathered
#: meanwhile (so does a batch of BIG_BATCH or more). The rate is counted in RATE_PERIOD
#: steps: two deliveries in quick succession (a HALT hit right after the answer to the
#: resume before it) are not load, and must not hold the hit back for a window.
BATCH_RATE = 4000
RATE_PERIOD = 0.004
#: The first window (seconds; the selector rounds it up to a millisecond).
BATCH_WINDOW = 0.0005
#: Batches of at least BIG_BATCH hits and events double the window, up to this; a batch
#: of less than a quarter of that sets it back to BATCH_WINDOW. Measured with a trivial
#: sink at 30,000 hits/s (tests/native/ptrace/trap_rate.py --cpu 0), waking the loop
#: every 4 ms instead of every 1 ms (the selector's resolution) gives the tracer about
#: 6 % more traps a second, as many as with no loop wake-up at all: each wake-up makes
#: the loop take the GIL between two traps, and the tracer wait for it.
MAX_BATCH_WINDOW = 0.004
BIG_BATCH = 16


class DeliveryPacing:
    """Decides, after each delivery, whether the next one waits for a window."""

    __slots__ = ("_deliveries", "_period_start", "window")

    def __init__(self) -> None:
        #: How long the next events gather under load (seconds).
        self.window = BATCH_WINDOW
        self._period_start = float("-inf")
        #: Deliveries since ``_period_start``.
        self._deliveries = 0

    def went_idle(self) -> None:
        """A window passed with nothing in it: the next event is delivered as it comes."""
        self.window = BATCH_WINDOW

    def after_delivery(self, size: int, now: float) -> float | None:
        """A batch of ``size`` hits and events was delivered at ``now`` (seconds): the
        time to let the next ones gather, or None to deliver the next as soon as it comes."""
        if now - self._period_start >= RATE_PERIOD:
            self._period_start = now
            self._deliveries = 0
        self._deliveries += 1
        # The longer the batches, the longer the next one may gather, up to MAX_BATCH_WINDOW.
        if size >= BIG_BATCH:
            self.window = min(self.window * 2, MAX_BATCH_WINDOW)
        elif size < BIG_BATCH // 4:
            self.window = BATCH_WINDOW
        if size < BIG_BATCH and self._deliveries <= BATCH_RATE * RATE_PERIOD:
            return None
        # Under load, let the next events gather for a while instead of waking the loop
        # (and taking the GIL from the tracer) once per trap.
        return self.window
