"""The non-stop mechanism's per-CPU rings and how they are read.

One ring per online CPU for the whole mechanism; every event bound to that
CPU writes into it. Every wake-up reads *all* rings (a thread's FORK record
and its first samples may sit in different ones; see ``nonstop_intake``).

Rings wake their reader on every record, for latency when hits are rare.
When records keep coming, per-record wake-ups cost more than the reading
(each one is a self-IPI, a VM exit here): after a wake-up that found records
the readers are removed and the rings read every ``SNOOZE_S`` until a read
finds nothing; then wake-ups are back. No timer runs while nothing happens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from hwbkptd.arch.perf.nonstop_events import NONSTOP_SAMPLE_TYPE, NonstopRing
from hwbkptd.arch.perf.nonstop_intake import Intake, NonstopStats
from hwbkptd.arch.perf.ring import Batch, SampleFormat

__all__ = ["SNOOZE_S", "RingSet"]

SNOOZE_S = 0.001


class RingSet:
    """cpu -> NonstopRing, read from the event loop."""

    def __init__(self, ring_pages: int, intake: Intake, stats: NonstopStats) -> None:
        self.rings: dict[int, NonstopRing] = {}
        self._ring_pages = ring_pages
        self._intake = intake
        self._stats = stats
        self._format = SampleFormat(NONSTOP_SAMPLE_TYPE, tasks=True, sample_id_all=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._snoozing: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def open_all(self, cpus: Iterable[int]) -> None:
        """A ring on each CPU, or (OSError) none."""
        try:
            for cpu in sorted(cpus):
                self.open(cpu)
        except OSError:
            self.close()
            raise

    def open(self, cpu: int) -> NonstopRing:
        ring = NonstopRing(cpu, self._ring_pages)
        self.rings[cpu] = ring
        if self._loop is not None and self._snoozing is None:
            self._loop.add_reader(ring.fd, self._readable)
        return ring

    def close(self, cpus: Sequence[int] | None = None) -> None:
        for cpu in list(self.rings) if cpus is None else [c for c in cpus if c in self.rings]:
            ring = self.rings.pop(cpu)
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(ring.fd)
            ring.close()
            self._intake.forget_cpu(cpu)
        if not self.rings and self._snoozing is not None:
            self._snoozing.cancel()
            self._snoozing = None

    def drain(self, *, defer: bool) -> int:
        """Read every ring and handle what they held; returns the bytes read."""
        batches: list[tuple[int, Batch]] = []
        total = 0
        for cpu, ring in self.rings.items():
            data = ring.ring.read()
            if data:
                total += len(data)
                batches.append((cpu, self._format.parse(data)))
        if batches:
            self._intake.take(batches)
        self._intake.flush(defer=defer)
        return total

    def _readable(self) -> None:
        self._stats.wakeups += 1
        if self.drain(defer=False):
            self._snooze()

    def _snooze(self) -> None:
        loop = self._loop
        if loop is None or self._snoozing is not None:
            return
        for ring in self.rings.values():
            loop.remove_reader(ring.fd)
        self._snoozing = loop.call_later(SNOOZE_S, self._snooze_over)

    def _snooze_over(self) -> None:
        self._snoozing = None
        if self.drain(defer=False):
            self._snooze()
            return
        assert self._loop is not None
        for ring in self.rings.values():
            self._loop.add_reader(ring.fd, self._readable)
