"""What the non-stop rings held, turned into sink calls in the right order.

All rings are read together on every wake-up: a thread's FORK record lands in
the ring of the CPU its creator ran on, its first samples maybe in another.
Within one read, births are handled first (a newborn's samples come after its
birth), then samples, merged across rings by time, then exits and execs (a
thread's samples come before its exit). Sink calls go through an outbox:
delivered at once from a ring's reader, but after ``apply`` returns when
``apply`` drained the rings, so the broker is never re-entered in the middle
of its own rewrite.

Values are read from ``/proc/PID/mem`` once per region per read, after the
accesses (``values_late``): every hit of one read reports the same late value.

Lost samples are counted by the kernel per breakpoint event
(PERF_FORMAT_LOST) and read when a ring reports a loss (PERF_RECORD_LOST),
when the rings go quiet, every batched window (``nonstop_rings``), and before
an event is closed or its thread's exit is reported. Counters, not LOST
records, because a LOST record is only written by the next record that fits
into that ring: after a burst that overflowed a ring none may come, and the
loss would never be told. A loss is reported against a thread routed through
the event (its owner first), else its owner, else any thread holding a
non-stop slot; with none it is only counted in stats. Where the kernel lacks
the counters (before 6.0), LOST records are reported instead, against the
thread of the most recent sample seen on that CPU.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from hwbkptd.arch.perf.generations import wall_offset_ns
from hwbkptd.arch.perf.nonstop_events import read_lost
from hwbkptd.arch.perf.nonstop_table import Event, NonstopTable, ThreadSlot
from hwbkptd.arch.perf.procmem import ProcMem
from hwbkptd.arch.perf.ring import (
    RECORD_COMM,
    RECORD_EXIT,
    RECORD_FORK,
    Batch,
    Sample,
    TaskRecord,
)
from hwbkptd.core.mechanism import HitReport, MechanismSink

__all__ = ["NonstopDelivery", "NonstopStats", "TaskHandler"]


@dataclass(slots=True)
class NonstopStats:
    #: Samples delivered as hits.
    samples: int = 0
    #: Samples the kernel could not write (ring full), reported as lost hits.
    lost: int = 0
    #: Records of any kind the rings reported lost (PERF_RECORD_LOST).
    lost_records: int = 0
    #: PERF_RECORD_THROTTLE: an event sampled over kernel.perf_event_max_sample_rate and
    #: was stopped until the next tick; the writes meanwhile are not counted anywhere.
    throttled: int = 0
    #: Samples of copies no thread routes (or of threads no longer known): dropped.
    strays: int = 0
    #: Samples of newborn threads dropped because their buffer was full.
    overflow: int = 0
    malformed: int = 0
    wakeups: int = 0
    births: int = 0
    exits: int = 0
    #: Lingering events replaced by own events of their adopters (to free a register).
    rehomed: int = 0
    #: Moves of the breakpoint events between the eager and the batched rings.
    moves: int = 0
    move_failures: int = 0
    #: Samples read from the batched rings.
    batched_samples: int = 0


def _time(s: Sample) -> int:
    return s.time


class TaskHandler(Protocol):
    """What is done with FORK/EXIT/COMM records (nonstop_procs.FollowedProcesses)."""

    def on_fork(self, task: TaskRecord) -> None: ...

    def on_exit(self, task: TaskRecord) -> None: ...

    def on_exec(self, task: TaskRecord) -> None: ...


class NonstopDelivery:
    """Parsed batches in, hits and life-cycle news out (through the outbox)."""

    #: The rings hold back records too recent to be in order across CPUs (the samples
    #: are the hits, one ring per CPU).
    holds_recent = True

    def __init__(self, table: NonstopTable, stats: NonstopStats, handler: TaskHandler) -> None:
        self._table = table
        self._stats = stats
        self._handler = handler
        self._sink: MechanismSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: list[Callable[[MechanismSink], None]] = []
        self._flush_scheduled = False
        self._last_tid: dict[int, int] = {}
        self.mem: dict[int, ProcMem] = {}

    def start(self, sink: MechanismSink, loop: asyncio.AbstractEventLoop) -> None:
        self._sink = sink
        self._loop = loop

    # --- outbox ----------------------------------------------------------------
    def emit(self, call: Callable[[MechanismSink], None]) -> None:
        self._outbox.append(call)

    def flush(self, *, defer: bool) -> None:
        """Deliver the outbox now, or (``defer``) on the loop's next turn."""
        if not self._outbox:
            return
        if defer:
            if not self._flush_scheduled and self._loop is not None:
                self._flush_scheduled = True
                self._loop.call_soon(self._deliver)
            return
        self._deliver()

    def _deliver(self) -> None:
        self._flush_scheduled = False
        box, self._outbox = self._outbox, []
        sink = self._sink
        if sink is None:
            return
        for call in box:
            call(sink)

    # --- batches ---------------------------------------------------------------
    def take(self, batches: list[tuple[int, Batch]]) -> None:
        """Handle every record of one read of all rings (cpu, batch); see the module doc."""
        tasks = [t for _, batch in batches for t in batch.tasks]
        if len(batches) > 1:
            tasks.sort(key=lambda t: t.time)
        for task in tasks:
            if task.kind == RECORD_FORK:
                self._handler.on_fork(task)
        values: dict[tuple[int, tuple[tuple[int, int], ...]], tuple[bytes, ...]] = {}
        table = self._table
        runs: list[list[Sample]] = []
        for cpu, batch in batches:
            self._stats.malformed += int(batch.malformed)
            self._stats.throttled += batch.throttled
            if batch.samples:
                runs.append(batch.samples)
                self._last_tid[cpu] = batch.samples[-1].tid
            if batch.lost:
                self._stats.lost_records += batch.lost
                if self._lost_uncounted():
                    self._lost(self._last_tid.get(cpu, 0), batch.lost)
                else:
                    self.poll_lost()
        # Each ring is in time order; a thread that moved between CPUs has samples in several.
        samples: Iterable[Sample] = runs[0] if len(runs) == 1 else heapq.merge(*runs, key=_time)
        hits: list[HitReport] = []
        wall = wall_offset_ns()
        for s in samples:
            slot = table.attribute(s)
            if slot is not None:
                hits.append(self.hit(s, slot, values, wall))
        self._publish(hits)
        for task in tasks:
            if task.kind == RECORD_EXIT:
                self._handler.on_exit(task)
            elif task.kind == RECORD_COMM and task.exec:
                self._handler.on_exec(task)
        self._stats.strays = table.strays
        self._stats.overflow = table.overflow

    def deliver_buffered(self, pairs: list[tuple[Sample, ThreadSlot]]) -> None:
        """Buffered samples of a newborn, attributed now that its first table is applied."""
        values: dict[tuple[int, tuple[tuple[int, int], ...]], tuple[bytes, ...]] = {}
        wall = wall_offset_ns()
        self._publish([self.hit(s, slot, values, wall) for s, slot in pairs])
        self._stats.strays = self._table.strays

    def forget_cpu(self, cpu: int) -> None:
        self._last_tid.pop(cpu, None)

    def _publish(self, hits: list[HitReport]) -> None:
        if hits:
            self._stats.samples += len(hits)
            self.emit(lambda sink: sink.on_hits(hits))

    def poll_lost(self, events: Sequence[Event] | None = None) -> None:
        """Report the samples the kernel lost since the last poll (all open events by default)."""
        for event in self._table.ids.values() if events is None else events:
            if event.closed or not event.counts_lost:
                continue
            try:
                total = read_lost(event.fd)
            except OSError:
                continue
            if total > event.lost:
                count, event.lost = total - event.lost, total
                self._lost(self._lost_tid(event), count)

    def _lost_tid(self, event: Event) -> int:
        if event.owner in event.routes:
            return event.owner
        if event.routes:
            return min(event.routes)
        return event.owner

    def _lost_uncounted(self) -> bool:
        return any(not e.counts_lost for e in self._table.ids.values() if not e.closed)

    def _lost(self, tid: int, count: int) -> None:
        self._stats.lost += count
        if not tid or tid not in self._table.threads:
            tid = next((t.tid for t in self._table.threads.values() if t.slots), 0)
        if tid:
            self.emit(lambda sink: sink.on_hits_lost(tid, count))

    def hit(
        self,
        s: Sample,
        slot: ThreadSlot,
        cache: dict[tuple[int, tuple[tuple[int, int], ...]], tuple[bytes, ...]],
        wall_offset: int,
    ) -> HitReport:
        """The hit of a sample; ``wall_offset`` (``wall_offset_ns``) makes its time wall time."""
        regions = slot.entry.regions
        key = (s.pid, regions)
        values = cache.get(key)
        if values is None:
            values = cache[key] = self._read(s.pid, regions)
        t = s.time
        since = slot.since
        generation = slot.gens[-1] if since and t >= since[-1] else slot.generation_at(t)
        # Positional: keywords add a quarter to the constructor's cost, and this runs
        # up to ~100,000 times a second.
        return HitReport(
            s.pid, s.tid, slot.pool, slot.index, generation, s.ip, s.addr, t + wall_offset, s.cpu,
            None, values, False, True,
        )  # fmt: skip

    def _read(self, pid: int, regions: tuple[tuple[int, int], ...]) -> tuple[bytes, ...]:
        mem = self.mem.get(pid)
        if mem is None or not regions:
            return ()
        try:
            return tuple(mem.read(address, length) for address, length in regions)
        except OSError:
            return ()
