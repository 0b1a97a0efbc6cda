"""BPF hit records turned into hits, in the non-stop delivery's order.

The non-stop delivery reads the perf rings (births, exits, execs of the
watched threads: the trackers); this subclass reads the BPF ring in the middle
of each read: after the births (a newborn's hits need its thread known), before
the exits. Records are attributed like samples, by (event id, tid): the
link's cookie is the event id, inherited copies included. Values come from the
record, read at the trap: exact, never ``values_late``. A newborn's records
wait with its samples for its first table; their values wait beside them.
"""

from __future__ import annotations

import time

from hwbkptd.arch.bpf.hitprog import RECORD, Record, parse_record
from hwbkptd.arch.bpf.keys import BpfKeys, KeyInfo
from hwbkptd.arch.perf.generations import wall_offset_ns
from hwbkptd.arch.perf.nonstop_delivery import NonstopDelivery
from hwbkptd.arch.perf.nonstop_table import ThreadSlot
from hwbkptd.arch.perf.ring import RECORD_FORK, Batch, Sample
from hwbkptd.core.mechanism import HitReport

__all__ = ["BpfDelivery"]

_Exact = tuple[tuple[bytes, ...], tuple[bytes, ...], int]


def _as_bytes(words: tuple[int, ...], regions: tuple[tuple[int, int], ...]) -> tuple[bytes, ...]:
    return tuple(w.to_bytes(8, "little")[:n] for w, (_, n) in zip(words, regions, strict=False))


class BpfDelivery(NonstopDelivery):
    keys: BpfKeys | None = None
    #: Records read by the last ``take``, and by all of them.
    last_read = 0
    records_total = 0
    #: (event id, tid, time) of a buffered newborn's record -> its exact values.
    _exact: dict[tuple[int, int, int], _Exact]

    def bind(self, keys: BpfKeys) -> None:
        self.keys = keys
        self._exact = {}
        keys.on_dropped = self._lost
        keys.on_release = self._released

    def take(self, batches: list[tuple[int, Batch]]) -> None:
        forks = sorted(
            (t for _, b in batches for t in b.tasks if t.kind == RECORD_FORK), key=lambda t: t.time
        )
        for task in forks:
            self._handler.on_fork(task)  # born() makes the second call (in super) a no-op
        self.last_read = self._read_ring()
        self.records_total += self.last_read
        super().take(batches)

    def _read_ring(self) -> int:
        keys = self.keys
        if keys is None:
            return 0
        records: list[Record] = []
        size = RECORD.size

        def collect(data: memoryview, offset: int, length: int) -> None:
            if length >= size:
                records.append(parse_record(data, offset))
            else:
                self._stats.malformed += 1

        keys.pipe.reader.read(collect)
        if not records:
            return 0
        table = self._table
        links = keys.links
        wall = wall_offset_ns()
        hits: list[HitReport] = []
        for rec in records:
            if rec.cookie:
                link = links.get(rec.cookie)
                info = link[1] if link is not None else None
                eid = rec.cookie
            else:
                info = keys.inherited(rec.pid, rec.addr)
                eid = self._inherited_event(rec)
            s = Sample(eid, rec.ip, rec.pid, rec.tid, rec.time, rec.addr, rec.cpu)
            slot = table.attribute(s)
            exact = self._exact_of(rec, info)
            if slot is not None:
                hits.append(self._report(s, slot, exact, info, wall))
                continue
            thread = table.threads.get(rec.tid)
            if thread is not None and thread.awaiting and exact is not None:
                self._exact[(s.id, s.tid, s.time)] = exact
        self._publish(hits)
        return len(records)

    def _released(self, info: KeyInfo) -> None:
        """A key is about to be freed: its filtered hits are counted first."""
        self.count_filtered([info])

    def _inherited_event(self, rec: Record) -> int:
        """The id of the event whose copy in the thread trapped (a record without cookie)."""
        thread = self._table.threads.get(rec.tid)
        if thread is None:
            return 0
        for slot in thread.slots.values():
            event = slot.events.get(rec.cpu)
            if event is not None and event.chunk.address == rec.addr:
                return event.id
        for event in thread.carries:
            if event.cpu == rec.cpu and event.chunk.address == rec.addr and not event.closed:
                return event.id
        return 0

    def _exact_of(self, rec: Record, info: KeyInfo | None) -> _Exact | None:
        if info is None or info.conf is None:
            return None
        regions = info.conf.regions
        skipped = 0
        if info.conf.filtering:
            skipped = rec.hits - info.accounted - 1 if rec.hits > info.accounted else -1
            info.accounted = max(info.accounted, rec.hits)
        olds = _as_bytes(rec.old, regions) if info.conf.filtering else ()
        return _as_bytes(rec.values, regions), olds, skipped

    def _report(
        self,
        s: Sample,
        slot: ThreadSlot,
        exact: _Exact | None,
        info: KeyInfo | None,
        wall: int,
    ) -> HitReport:
        if exact is None or info is None or info.conf is None:
            # The program read nothing for this slot: the late read of the non-stop mode.
            return super().hit(s, slot, {}, wall)
        if slot.entry.regions != info.conf.regions:
            return super().hit(s, slot, {}, wall)  # an adopter holding other regions
        values, olds, skipped = exact
        t = s.time
        since = slot.since
        generation = slot.gens[-1] if since and t >= since[-1] else slot.generation_at(t)
        return HitReport(
            s.pid, s.tid, slot.pool, slot.index, generation, s.ip, s.addr, t + wall, s.cpu,
            None, values, False, False, "", 0, (), (), skipped, False, olds,
        )  # fmt: skip

    def hit(
        self,
        s: Sample,
        slot: ThreadSlot,
        cache: dict[tuple[int, tuple[tuple[int, int], ...]], tuple[bytes, ...]],
        wall_offset: int,
    ) -> HitReport:
        exact = self._exact.pop((s.id, s.tid, s.time), None) if self.keys else None
        if exact is None:
            return super().hit(s, slot, cache, wall_offset)
        keys = self.keys
        link = keys.links.get(s.id) if keys else None
        info = link[1] if link else keys.inherited(s.pid, s.addr) if keys else None
        return self._report(s, slot, exact, info, wall_offset)

    def count_filtered(self, infos: list[KeyInfo] | None = None) -> None:
        """Hits the program counted but filtered out since the last record: count-only
        reports, so hit counts stay exact; and records the full ring dropped."""
        keys = self.keys
        if keys is None:
            return
        if infos is None:
            keys.check_dropped()
            infos = keys.filtered()
        reports: list[HitReport] = []
        for info in infos:
            if info.conf is None or not info.conf.filtering:
                continue
            counts = keys.pipe.counts(info.key)
            if counts.hits <= info.accounted:
                continue
            slot = info.slot
            # Positional: pid, tid, pool, index, generation, ip, address, time, cpu, access,
            # values, halted, values_late, ip_symbol, task_tid, call_chain(+symbols), skipped,
            # count_only.
            reports.append(
                HitReport(
                    info.pid,
                    slot.tid,
                    slot.pool,
                    slot.index,
                    slot.gens[-1] if slot.gens else 0,
                    0,
                    0,
                    wall_offset_ns() + time.monotonic_ns(),
                    -1,
                    None,
                    (),
                    False,
                    False,
                    "",
                    0,
                    (),
                    (),
                    counts.hits - info.accounted,
                    True,
                )
            )
            info.accounted = counts.hits
        if reports:
            self.emit(lambda sink: sink.on_hits(reports))
