"""One session's numbered event log: replay after a reconnect, bounded hits (DESIGN 3, 6).

Events are numbered 1, 2, 3, ... without gaps. A reader takes batches after a
sequence number it names; what it took counts as delivered. Delivered events
are kept (up to ``retention``) so a client that lost its connection can ask for
them again. Undelivered state events are never dropped; undelivered hits are
bounded by ``hit_buffer``, and the hits beyond it are counted and reported as
one ``HitsDropped`` event, so a slow client never holds a target back.

With a :class:`~hwbkptd.core.limits.MemoryBudget` the log counts what it holds there;
while the budget is pressed it keeps no replay and takes a hit only while fewer than
``PRESSURE_HIT_FLOOR`` are undelivered (a reader keeps its events, a hog loses its own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwbkptd.core.events import Event, EventKind, Hit, HitsDropped
from hwbkptd.core.limits import PRESSURE_HIT_FLOOR

if TYPE_CHECKING:
    from hwbkptd.core.limits import MemoryBudget

__all__ = ["MAX_BATCH", "EventLog"]

#: The largest batch handed to a reader: keeps messages small and per-event overhead low.
MAX_BATCH = 256
# Physically trim the delivered prefix only in steps this large: the replay floor is
# computed exactly, so this only bounds how often the list is shifted.
_TRIM_STEP = 1024


class EventLog:
    def __init__(
        self, *, hit_buffer: int, retention: int, budget: MemoryBudget | None = None
    ) -> None:
        if hit_buffer < 1:
            raise ValueError("hit_buffer must be at least 1")
        if retention < 0:
            raise ValueError("retention must not be negative")
        self._hit_buffer = hit_buffer
        self._retention = retention
        self._events: list[Event] = []
        #: Sequence number of ``_events[0]`` (the next number when the list is empty).
        self._base = 1
        self._next = 1
        self._delivered = 0
        self._undelivered_hits = 0
        self._dropped = 0
        self.total_dropped = 0
        self._budget = budget
        if budget is not None:
            budget.session_opened(self)

    @property
    def last_seq(self) -> int:
        """The number of the newest event (0 before the first)."""
        return self._next - 1

    @property
    def delivered_seq(self) -> int:
        """The highest number any reader has taken."""
        return self._delivered

    @property
    def undelivered_hits(self) -> int:
        return self._undelivered_hits

    @property
    def pending_drops(self) -> int:
        """Hits dropped since the last ``HitsDropped`` event was queued."""
        return self._dropped

    @property
    def oldest_seq(self) -> int:
        """The oldest number a reader can still be given (``last_seq + 1`` if none)."""
        budget = self._budget
        retention = 0 if budget is not None and budget.pressed else self._retention
        return max(self._base, self._delivered - retention + 1)

    def append(self, breakpoint_id: int, kind: EventKind, time_ns: int) -> Event | None:
        """Queue an event; returns it, or None for a hit dropped because the buffer is full."""
        if isinstance(kind, Hit):
            budget = self._budget
            if self._undelivered_hits >= self._hit_buffer or (
                budget is not None
                and budget.pressed
                and self._undelivered_hits >= PRESSURE_HIT_FLOOR
            ):
                self._dropped += 1
                self.total_dropped += 1
                return None
            self._flush_drops(time_ns)
            self._undelivered_hits += 1
        return self._push(breakpoint_id, kind, time_ns)

    def extend_hits(self, items: list[tuple[int, Hit, int]]) -> int:
        """Queue hits ``(breakpoint_id, hit, time_ns)`` in order, as that many ``append``
        calls would; the count queued. One pass, for the hits of one routed batch."""
        budget = self._budget
        n = len(items)
        if budget is not None and not budget.fits(n + 1):
            # The budget may press within the batch: one at a time, as it happens.
            return sum(self.append(bid, hit, t) is not None for bid, hit, t in items)
        room = max(self._hit_buffer - self._undelivered_hits, 0)
        take = items if room >= n else items[:room]
        if take:
            self._flush_drops(take[0][2])
            seq = self._next
            events = self._events
            for bid, hit, t in take:
                events.append(Event(seq, t, bid, hit))  # positional: once per hit
                seq += 1
            self._next = seq
            self._undelivered_hits += len(take)
            if budget is not None:
                budget.add_events(len(take))
        dropped = n - len(take)
        if dropped:
            self._dropped += dropped
            self.total_dropped += dropped
        return len(take)

    def has_after(self, after_seq: int) -> bool:
        return self._dropped > 0 or self.last_seq > max(after_seq, self.oldest_seq - 1)

    def take(self, after_seq: int, time_ns: int, limit: int = MAX_BATCH) -> list[Event]:
        """Events numbered above ``after_seq`` (no older than the oldest retained), in order.

        What is returned counts as delivered. A pending drop count is queued first
        as a ``HitsDropped`` event: the reader is draining, so this is the moment
        to tell it.
        """
        self._flush_drops(time_ns)
        start = max(after_seq + 1, self.oldest_seq)
        if start >= self._next or limit < 1:
            return []
        lo = start - self._base
        batch = self._events[lo : lo + limit]
        newest = batch[-1].seq
        if newest > self._delivered:
            for event in batch:
                if event.seq > self._delivered and isinstance(event.kind, Hit):
                    self._undelivered_hits -= 1
            self._delivered = newest
            self._trim()
        return batch

    def _push(self, breakpoint_id: int, kind: EventKind, time_ns: int) -> Event:
        event = Event(self._next, time_ns, breakpoint_id, kind)  # positional: once per hit
        self._next += 1
        self._events.append(event)
        if self._budget is not None:
            self._budget.add_events(1)
        return event

    def _flush_drops(self, time_ns: int) -> None:
        if self._dropped:
            count, self._dropped = self._dropped, 0
            self._push(0, HitsDropped(count=count), time_ns)

    def _trim(self) -> None:
        excess = self.oldest_seq - self._base
        if excess >= _TRIM_STEP or (excess > 0 and excess * 2 >= len(self._events)):
            self._drop_prefix(excess)

    def _drop_prefix(self, count: int) -> None:
        del self._events[:count]
        self._base += count
        if self._budget is not None:
            self._budget.remove_events(count)

    def drop_replay(self) -> None:
        """Let go of every delivered event now (the memory budget is pressed)."""
        excess = min(self._delivered + 1, self._next) - self._base
        if excess > 0:
            self._drop_prefix(excess)

    def release(self) -> None:
        """The session is gone: what this log still holds no longer counts in the budget
        (its stream may still hand out the last events; then the log is freed)."""
        budget, self._budget = self._budget, None
        if budget is not None:
            budget.remove_events(len(self._events))
            budget.session_ended(self)
