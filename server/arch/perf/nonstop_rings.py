"""The non-stop mechanism's per-CPU rings and how they are read.

Every wake-up reads *all* rings (a thread's FORK record and its first samples
may sit in different ones; see ``nonstop_delivery``).

Why two rings per CPU. A ring that wakes its reader on every record costs the
writing thread a self-IPI per record (a VM exit here): measured with a tight
writer and nobody reading, 45,000 writes/s against 95,000/s when the ring
wakes only every 16 KB. But a ring that wakes rarely leaves a lone hit unseen
until something reads it. So each CPU has an *eager* ring (wakes on every
record) and a *batched* one (16 KB watermark), and the breakpoint events write
into one or the other by the observed rate:

- eager: rings wake the loop; a wake-up that found records removes the
  readers and reads every ``SNOOZE_S`` until a read finds nothing, then wakes
  are back (and the rings are read once more: perf's poll reports readiness
  only once, and registering a reader polls); no timer runs while nothing
  happens. When one such episode runs at ``BATCH_ABOVE`` samples/s or more,
  the events move to the batched rings.
- batched: rings are read every ``BATCH_TICK_S`` (that bounds the latency);
  when a ``WINDOW_S`` window sees fewer than ``EAGER_BELOW`` samples/s, the
  events move back and, once moved, the timer stops as in eager mode.

Moving an event takes an RCU grace period (``nonstop_ring_mover``), done in
threads. Inherited copies write into their parent event's ring, so moving the
parent moves every copy. Trackers stay on the eager rings. An event writes
into one ring or the other, never both, and both rings of a CPU are read
together, their samples merged by time: nothing is lost or doubled by a move.

Order across CPUs (perf's "ordered events"). One pass reads the CPUs one after
the other: a thread that traps on CPU 0 just after its ring was read, then on
CPU 1 before that ring is read, would have its later hit delivered first. So a
pass on the timer or a wake-up notes the time before it reads, delivers the
records stamped more than ``HOLD_MARGIN_NS`` before it (a record is stamped
before it is written), and holds the rest, samples, exits and execs alike (an
exit still follows its samples), for the next pass, merged with what that one
reads; births go at once (a newborn's first table adopts what it carries).
Every other pass (a table applied, a watch, a close, a CPU going offline)
delivers everything: what it delivers is newer than all delivered before.
A delivery whose hits come in one ring already in order (BPF) holds nothing.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import time
from collections.abc import Callable, Iterable, Sequence

from hwbkptd.arch.perf.nonstop_delivery import NonstopDelivery, NonstopStats
from hwbkptd.arch.perf.nonstop_events import NONSTOP_SAMPLE_TYPE, NonstopRing
from hwbkptd.arch.perf.nonstop_ring_mover import RingMover
from hwbkptd.arch.perf.ring import RECORD_FORK, Batch, Sample, SampleFormat

__all__ = [
    "BATCH_ABOVE",
    "BATCH_TICK_S",
    "BATCH_WATERMARK",
    "EAGER_BELOW",
    "HOLD_MARGIN_NS",
    "SNOOZE_S",
    "WINDOW_S",
    "RingSet",
]

SNOOZE_S = 0.001
BATCH_TICK_S = 0.002
#: Samples/s over an eager episode of at least ``EPISODE_MIN_S`` that moves events to batched.
BATCH_ABOVE = 2000
EPISODE_MIN_S = 0.004
#: Samples/s over a batched window of ``WINDOW_S`` under which events move back to eager.
EAGER_BELOW = 500
WINDOW_S = 0.05
BATCH_WATERMARK = 16384
#: Records stamped this close before a pass may still be being written on another CPU.
HOLD_MARGIN_NS = 50_000

#: (cpu, fd) of every open breakpoint event (the ones that move).
EventLister = Callable[[], Iterable[tuple[int, int]]]


def _time(s: Sample) -> int:
    return s.time


def merge(a: Batch, b: Batch) -> Batch:
    """Two reads of one CPU's rings as one, in time order (each ring is in time order)."""
    if not (a.samples or a.tasks or a.lost):
        return b
    if not (b.samples or b.tasks or b.lost):
        return a
    return Batch(
        samples=list(heapq.merge(a.samples, b.samples, key=_time)),
        tasks=sorted(a.tasks + b.tasks, key=lambda t: t.time),
        lost=a.lost + b.lost,
        throttled=a.throttled + b.throttled,
        other=a.other + b.other,
        malformed=a.malformed or b.malformed,
    )


def split_at(batch: Batch, cutoff: int) -> tuple[Batch, Batch | None]:
    """The records stamped before ``cutoff``, every birth and the counts; and the rest of
    the samples, exits and execs if any. A birth is never held: it only makes a thread
    known, and its first table (adopting the copies it carries) should not wait."""
    i = bisect.bisect_left(batch.samples, cutoff, key=_time)
    j = bisect.bisect_left(batch.tasks, cutoff, key=lambda t: t.time)
    held_tasks = [t for t in batch.tasks[j:] if t.kind != RECORD_FORK]
    if i == len(batch.samples) and not held_tasks:
        return batch, None
    later = Batch(samples=batch.samples[i:], tasks=held_tasks)
    births = [t for t in batch.tasks[j:] if t.kind == RECORD_FORK]
    batch.samples, batch.tasks = batch.samples[:i], batch.tasks[:j] + births
    return batch, later


class RingSet:
    """cpu -> (eager, batched) NonstopRing, read from the event loop (see the module doc)."""

    def __init__(
        self, ring_pages: int, delivery: NonstopDelivery, stats: NonstopStats, events: EventLister
    ) -> None:
        #: cpu -> eager ring (trackers always write there).
        self.rings: dict[int, NonstopRing] = {}
        self.batched_rings: dict[int, NonstopRing] = {}
        self._ring_pages = ring_pages
        self._delivery = delivery
        self._stats = stats
        self._events = events
        self._format = SampleFormat(NONSTOP_SAMPLE_TYPE, tasks=True, sample_id_all=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ring_mover = RingMover()
        self._readers = False
        self._timer: asyncio.TimerHandle | None = None
        #: Where breakpoint events write now (moves asked for included).
        self.batched = False
        self._moving: asyncio.Future[list[int]] | None = None
        self._waiters = 0
        self._moved_at = 0.0
        #: Start (time.monotonic()) and samples of the current episode or window.
        self._since = 0.0
        self._count = 0
        #: cpu -> records too recent for the last pass to deliver (see the module doc).
        self._held: dict[int, Batch] = {}
        self._holds = delivery.holds_recent

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def ticking(self) -> bool:
        """Rings are read on a timer (records flowing, batched, or a move under way)."""
        return self._timer is not None

    def open_all(self, cpus: Iterable[int]) -> None:
        """Both rings on each CPU, or (OSError) none."""
        try:
            for cpu in sorted(cpus):
                self.open(cpu)
        except OSError:
            self.close()
            raise

    def open(self, cpu: int) -> NonstopRing:
        """The CPU's rings; returns the eager one (for trackers)."""
        ring = NonstopRing(cpu, self._ring_pages)
        try:
            data = ring.ring.data_size
            batched = NonstopRing(cpu, self._ring_pages, min(BATCH_WATERMARK, data // 4))
        except BaseException:
            ring.close()
            raise
        self.rings[cpu] = ring
        self.batched_rings[cpu] = batched
        if self._loop is not None and self._timer is None:
            self._loop.add_reader(ring.fd, self._readable)
            self._readers = True
        return ring

    def attach_breakpoint(self, cpu: int, event_fd: int) -> None:
        """Send a new breakpoint event's records into the CPU's ring of the current mode."""
        (self.batched_rings if self.batched else self.rings)[cpu].attach(event_fd)

    def close(self, cpus: Sequence[int] | None = None) -> None:
        for cpu in list(self.rings) if cpus is None else [c for c in cpus if c in self.rings]:
            ring = self.rings.pop(cpu)
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(ring.fd)
            ring.close()
            self.batched_rings.pop(cpu).close()
            self._delivery.forget_cpu(cpu)
        if not self.rings:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._readers = False
            self.batched = False

    async def wait_for_moves(self) -> None:
        """Wait until no move runs (its dups would keep closed events alive)."""
        self._waiters += 1  # no new move starts meanwhile: a waiter is never starved
        try:
            # A finished move is not waited for: awaiting a done future does not yield, and
            # ``_moved`` (which clears ``_moving``) is a callback that only the loop runs, so
            # looping until it ran would spin the loop forever.
            while (moving := self._moving) is not None and not moving.done():
                await asyncio.shield(moving)
        finally:
            self._waiters -= 1

    def shutdown(self) -> None:
        self._ring_mover.close()

    # --- reading ---------------------------------------------------------------------
    def drain(self, *, defer: bool, hold: bool = False) -> int:
        """Read every ring and handle what they held; returns the samples read. With
        ``hold``, records too recent to be in order across CPUs wait for the next pass."""
        cutoff = time.monotonic_ns() - HOLD_MARGIN_NS if hold and self._holds else None
        held, self._held = self._held, {}
        batches: list[tuple[int, Batch]] = []
        samples = 0
        parse = self._format.parse
        for cpu, eager in self.rings.items():
            # The ring events move to is read first: a record there was written after
            # every earlier record of this CPU in the other ring, which the second read sees.
            other = self.batched_rings[cpu]
            first, second = (other, eager) if self.batched else (eager, other)
            a = first.ring.read()
            b = second.ring.read()
            earlier = held.pop(cpu, None)
            if not (a or b or earlier):
                continue
            batch = Batch()
            if a or b:
                pa, pb = parse(a), parse(b)
                self._stats.batched_samples += len((pa if self.batched else pb).samples)
                batch = merge(pa, pb)
                samples += len(batch.samples)
            if earlier is not None:
                batch = merge(earlier, batch)
            if cutoff is not None:
                batch, later = split_at(batch, cutoff)
                if later is not None:
                    self._held[cpu] = later
            batches.append((cpu, batch))
        batches += held.items()  # of CPUs closed since: nothing comes after them
        # Always: a delivery may read hits from elsewhere too (the BPF ring), after the
        # births these rings hold and before their exits.
        self._delivery.take(batches)
        self._delivery.flush(defer=defer)
        return samples

    def _readable(self) -> None:
        self._stats.wakeups += 1
        self._read_awake(time.monotonic())

    def _read_awake(self, now: float) -> None:
        """Read with the readers on; records found (or a move) start an episode."""
        if self.drain(defer=False, hold=True) or self._held or self._moving is not None:
            self._episode(now)

    def _episode(self, now: float) -> None:
        """Records are flowing: stop the wake-ups, read on a timer."""
        assert self._loop is not None
        self._readers_off()
        self._since, self._count = now, 0
        self._timer = self._loop.call_later(SNOOZE_S, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        self._timer = None
        n = self.drain(defer=False, hold=True)
        now = time.monotonic()
        self._count += n
        elapsed = now - self._since
        idle = self._moving is None and not self._waiters
        if self.batched:
            if elapsed >= WINDOW_S:
                self._poll_lost()
                if idle and self._count < EAGER_BELOW * elapsed:
                    self._move(batched=False)
                self._since, self._count = now, 0
            self._timer = self._loop.call_later(BATCH_TICK_S, self._tick)
            return
        if not n and not self._held and idle and now - self._moved_at >= SNOOZE_S:
            self._poll_lost()
            self._readers_on()  # quiet again: wake on the next record
            # Registering a ring polls it, and perf's poll clears the readiness it reports,
            # which epoll then checks again before telling: a record written since the read
            # above would wake nobody. Read once more; any later record wakes the loop.
            self._read_awake(now)
            return
        if idle and elapsed >= EPISODE_MIN_S and self._count >= BATCH_ABOVE * elapsed:
            self._move(batched=True)
            self._since, self._count = now, 0
        self._timer = self._loop.call_later(SNOOZE_S, self._tick)

    def _poll_lost(self) -> None:
        # A burst that overflowed a ring may leave no later record to carry the loss.
        self._delivery.poll_lost()
        self._delivery.flush(defer=False)

    def _readers_off(self) -> None:
        if self._readers and self._loop is not None:
            for ring in self.rings.values():
                self._loop.remove_reader(ring.fd)
        self._readers = False

    def _readers_on(self) -> None:
        if not self._readers and self._loop is not None:
            for ring in self.rings.values():
                self._loop.add_reader(ring.fd, self._readable)
        self._readers = True

    # --- moving events between the rings --------------------------------------------------
    def _move(self, *, batched: bool) -> None:
        assert self._loop is not None
        targets = self.batched_rings if batched else self.rings
        jobs: dict[int, tuple[int, list[int]]] = {}
        for cpu, fd in self._events():
            if cpu in targets:
                jobs.setdefault(cpu, (targets[cpu].fd, []))[1].append(fd)
        try:
            moving = self._ring_mover.move(self._loop, jobs)
        except OSError:
            return  # out of descriptors: stay as we are
        self.batched = batched
        self._stats.moves += 1
        self._moving = moving
        moving.add_done_callback(self._moved)

    def _moved(self, moving: asyncio.Future[list[int]]) -> None:
        self._moving = None
        self._moved_at = time.monotonic()
        if not moving.cancelled() and moving.exception() is None:
            self._stats.move_failures += sum(moving.result())
