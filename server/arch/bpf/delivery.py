"""BPF hit records turned into hits, in the non-stop delivery's order.

The non-stop delivery reads the perf rings (births, exits, execs of the
watched threads: the trackers); this subclass reads the BPF ring in the middle
of each read: after the births (a newborn's hits need its thread known), before
the exits. Records are attributed like samples, by (event id, tid): the
link's cookie is the event id, inherited copies included. Values come from the
record, read at the trap: exact, never ``values_late``. A newborn's records
wait with its samples for its first table; their values wait beside them.
A record of a thread not known yet (its birth is in a CPU's ring read before
the clone wrote it, while its first hits were in the BPF ring read after)
waits for the next passes, which read that birth, up to ``UNBORN_PASSES``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from hwbkptd.arch.bpf.hitprog import RECORD
from hwbkptd.arch.bpf.keys import BpfKeys, KeyInfo
from hwbkptd.arch.perf.generations import wall_offset_ns
from hwbkptd.arch.perf.nonstop_delivery import NonstopDelivery
from hwbkptd.arch.perf.nonstop_table import Event, ThreadSlot
from hwbkptd.arch.perf.ring import RECORD_FORK, Batch, Sample
from hwbkptd.core.mechanism import HitReport

__all__ = ["UNBORN_PASSES", "BpfDelivery"]

#: Passes a record of a not yet known thread of a watched process waits for its birth.
UNBORN_PASSES = 3

_Exact = tuple[tuple[bytes, ...], tuple[bytes, ...], int]


#: A record: cookie, time, tid, pid, cpu, nvals, ip, addr, hits, then val[4] and old[4].
_BODY = struct.Struct("<QQIIIIQQQ64s")
assert _BODY.size == RECORD.size
_time = itemgetter(2)  # of a read record: length, cookie, time, ...


class BpfDelivery(NonstopDelivery):
    #: Hits come from one ring, in order; holding the trackers' births would strand them.
    holds_recent = False
    keys: BpfKeys | None = None
    #: Records read by the last ``take``, and by all of them.
    last_read = 0
    records_total = 0
    #: (event id, tid, time) of a buffered newborn's record -> its exact values.
    _exact: dict[tuple[int, int, int], _Exact]

    def bind(self, keys: BpfKeys) -> None:
        self.keys = keys
        self._exact = {}
        self._unborn: list[tuple[tuple[Any, ...], int]] = []
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
        # One C unpack for the whole consumed span (this runs up to ~100,000 times a
        # second): per record, (length word, header fields, the 64 bytes of values then
        # old values).
        reader = keys.pipe.reader
        records, odd = reader.read_batch(_BODY)
        spilled = keys.pipe.spill.read(_BODY)
        if spilled:
            # Records the ring refused (spill.py). What the ring took before them is read
            # again now, so that by time each comes after every earlier record.
            more, more_odd = reader.read_batch(_BODY)
            records = sorted(records + more + spilled, key=_time)
            odd += more_odd
        self._stats.malformed += odd
        waiting, self._unborn = self._unborn, []
        if not (records or waiting):
            return 0
        route = self._table.route
        links = keys.links
        wall = wall_offset_ns()
        hits: list[HitReport] = []
        append = hits.append
        for rec, passes in waiting:  # before this pass's records: they came earlier
            self._record(rec, wall, hits, passes)
        # The attribution of the last (cookie, tid) seen, when its records can be built
        # here: the common case, a run of records of one slot with one unfiltered region.
        last_cookie = last_tid = -1
        slot: ThreadSlot | None = None
        width = 0
        for rec in records:
            _, cookie, t, tid, pid, cpu, _, ip, addr, _, raw = rec
            if cookie != last_cookie or tid != last_tid:
                last_cookie, last_tid = cookie, tid
                slot, width = self._fast_route(cookie, tid, route, links)
            if slot is None:
                self._record(rec, wall, hits, UNBORN_PASSES)
                continue
            since = slot.since
            generation = slot.gens[-1] if since and t >= since[-1] else slot.generation_at(t)
            report = HitReport(
                pid, tid, slot.pool, slot.index, generation, ip, addr, t + wall, cpu,
                None, (raw[:width],), False, False, "", 0, (), (), 0, False, (),
            )  # fmt: skip
            append(report)
        self._publish(hits)
        return len(records)

    @staticmethod
    def _fast_route(
        cookie: int,
        tid: int,
        route: dict[tuple[int, int], ThreadSlot],
        links: dict[int, tuple[int, KeyInfo]],
    ) -> tuple[ThreadSlot | None, int]:
        """The slot of (cookie, tid) and its region's width when ``_read_ring`` may build its
        hits inline (what ``_record`` would build: the same attribution, exact values, no
        kernel filter); else (None, 0)."""
        link = links.get(cookie) if cookie else None
        conf = link[1].conf if link is not None else None
        if conf is None or conf.filtering or len(conf.regions) != 1:
            return None, 0
        slot = route.get((cookie, tid))
        if slot is None or slot.entry.regions != conf.regions:
            return None, 0
        return slot, conf.regions[0][1]

    def _record(self, rec: tuple[Any, ...], wall: int, hits: list[HitReport], passes: int) -> None:
        """One record the general way: inherited copies, filters, newborns, strays; a
        record of a thread not known yet waits ``passes`` more passes for its birth."""
        keys = self.keys
        assert keys is not None
        _, cookie, t, tid, pid, cpu, _, ip, addr, count, raw = rec
        table = self._table
        if passes and tid not in table.threads and table.pid_threads(pid):
            self._unborn.append((rec, passes - 1))
            return
        if cookie:
            eid = cookie
            link = keys.links.get(cookie)
            info = link[1] if link is not None else None
        else:
            info = keys.inherited(pid, addr)
            eid = self._inherited_event(tid, cpu, addr)
        s = Sample(eid, ip, pid, tid, t, addr, cpu)
        slot = self._table.attribute(s)
        exact = self._exact_of(raw, count, info)
        if slot is not None:
            hits.append(self._report(s, slot, exact, info, wall))
            return
        thread = self._table.threads.get(tid)
        if thread is not None and thread.awaiting and exact is not None:
            self._exact[(eid, tid, t)] = exact

    def poll_lost(self, events: Sequence[Event] | None = None) -> None:
        """Losses first, while the broker still knows the threads (before exits and closes):
        the perf events' lost samples and the records the full BPF ring dropped."""
        super().poll_lost(events)
        if self.keys is not None:
            self.keys.check_dropped()

    def _released(self, info: KeyInfo) -> None:
        """A key is about to be freed: its filtered hits are counted first."""
        self.count_filtered([info])

    def _inherited_event(self, tid: int, cpu: int, addr: int) -> int:
        """The id of the event whose copy in the thread trapped (a record without cookie)."""
        thread = self._table.threads.get(tid)
        if thread is None:
            return 0
        for slot in thread.slots.values():
            event = slot.events.get(cpu)
            if event is not None and event.chunk.address == addr:
                return event.id
        for event in thread.carries:
            if event.cpu == cpu and event.chunk.address == addr and not event.closed:
                return event.id
        return 0

    @staticmethod
    def _exact_of(raw: bytes, count: int, info: KeyInfo | None) -> _Exact | None:
        """Values (and, when the kernel filters, old values and hits skipped) of a record;
        ``raw`` is its val[4] then old[4] words, little-endian."""
        if info is None or info.conf is None:
            return None
        conf = info.conf
        regions = conf.regions
        if len(regions) == 1:
            values: tuple[bytes, ...] = (raw[: regions[0][1]],)
        else:
            values = tuple(raw[8 * i : 8 * i + n] for i, (_, n) in enumerate(regions))
        if not conf.filtering:
            return values, (), 0
        skipped = count - info.accounted - 1 if count > info.accounted else -1
        info.accounted = max(info.accounted, count)
        olds = tuple(raw[32 + 8 * i : 32 + 8 * i + n] for i, (_, n) in enumerate(regions))
        return values, olds, skipped

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
