"""From ring bytes to the sink: samples become HitReports, attributed to slot generations.

A hit is attributed to the table generation in force when it happened: a slot
kept across rewrites remembers since when each generation holds it, and the
sample's CLOCK_MONOTONIC time picks one; the hit reports that time as wall-clock time.
Batches drained inside ``apply`` are
delivered by a ``call_soon`` right after it, never into the caller's rewrite,
and always before anything read later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from hwbkptd.arch.perf.generations import GenerationHistory, wall_offset_ns
from hwbkptd.arch.perf.kallsyms import Kallsyms
from hwbkptd.arch.perf.ring import SampleFormat
from hwbkptd.core.mechanism import HitReport, MechanismSink, SlotEntry
from hwbkptd.core.model import CPU_CONTEXT

__all__ = ["KernelDelivery", "KernelSlot", "KernelStats"]


@dataclass(slots=True)
class KernelSlot(GenerationHistory):
    """One installed slot of the CPU context table and its per-CPU events."""

    pool: str
    index: int
    entry: SlotEntry
    #: cpu -> (event fd, event id)
    events: dict[int, tuple[int, int]] = field(default_factory=dict)


@dataclass(slots=True)
class KernelStats:
    samples: int = 0
    lost: int = 0
    throttled: int = 0
    #: Samples from events no longer known (cannot happen unless ids are mixed up).
    unattributed: int = 0
    malformed: int = 0
    wakeups: int = 0


def _symbols(ksyms: Kallsyms | None, chain: tuple[int, ...]) -> tuple[str, ...]:
    if not chain:
        return ()
    if ksyms is None:
        return tuple("" for _ in chain)
    return tuple(ksyms.symbolize(ip) for ip in chain)


class KernelDelivery:
    """Parses what a ring held and hands the hits to the sink, now or after apply()."""

    def __init__(self, fmt: SampleFormat, stats: KernelStats) -> None:
        self._format = fmt
        self._stats = stats
        self._sink: MechanismSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._symbolize: Kallsyms | None = None
        self._deferred: list[HitReport] = []
        self._deferred_lost = 0
        self._flush_scheduled = False

    def start(
        self, sink: MechanismSink, loop: asyncio.AbstractEventLoop, kallsyms: Kallsyms | None
    ) -> None:
        self._sink = sink
        self._loop = loop
        self._symbolize = kallsyms

    def take(
        self,
        data: bytes,
        ids: Mapping[int, KernelSlot],
        *,
        defer: bool,
        fmt: SampleFormat | None = None,
    ) -> None:
        """Deliver the records in ``data`` (written as ``fmt`` says, default the delivery's
        own); ``defer`` holds them until the loop's next turn."""
        if not data:
            return
        batch = (fmt or self._format).parse(data)
        stats = self._stats
        stats.lost += batch.lost
        stats.throttled += batch.throttled
        stats.malformed += int(batch.malformed)
        hits: list[HitReport] = []
        ksyms = self._symbolize
        wall = wall_offset_ns()
        for s in batch.samples:
            slot = ids.get(s.id)
            if slot is None:
                stats.unattributed += 1
                continue
            hits.append(
                HitReport(
                    pid=s.pid,
                    tid=CPU_CONTEXT,
                    task_tid=s.tid,
                    pool=slot.pool,
                    index=slot.index,
                    generation=slot.generation_at(s.time),
                    ip=s.ip,
                    address=s.addr,
                    time_ns=s.time + wall,
                    cpu=s.cpu,
                    ip_symbol=ksyms.symbolize(s.ip) if ksyms is not None else "",
                    call_chain=s.callchain,
                    call_chain_symbols=_symbols(ksyms, s.callchain),
                )
            )
        stats.samples += len(hits)
        if not defer:
            self._deliver(hits, batch.lost)
            return
        self._deferred.extend(hits)
        self._deferred_lost += batch.lost
        if not self._flush_scheduled and (self._deferred or self._deferred_lost):
            assert self._loop is not None
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._deliver([], 0)

    def _deliver(self, hits: list[HitReport], lost: int) -> None:
        if self._deferred or self._deferred_lost:
            # Older hits drained by apply() still wait for their flush: they go first.
            hits = self._deferred + hits
            lost += self._deferred_lost
            self._deferred, self._deferred_lost = [], 0
        if self._sink is None:
            return
        if hits:
            self._sink.on_hits(hits)
        if lost:
            self._sink.on_hits_lost(CPU_CONTEXT, lost)
