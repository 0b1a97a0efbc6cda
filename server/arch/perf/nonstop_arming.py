"""Arming the non-stop slots of one thread: adopt carried copies, open the rest, re-home.

A slot is armed on every CPU or refused (the kernel answers ENOSPC when the
thread's debug registers are full). Events are opened disabled and enabled
once every CPU has one, so a slot never samples on some CPUs only. Before
refusing, registers held by events the thread does not route (``lingering``:
an own event kept for its adopters, or a copy inherited from a creator whose
chunk the thread's table lacks) are freed by "re-homing": every thread still
routed through such an event gets its own event, then the event is closed,
which removes all of its copies. Then the open is retried once.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Mapping, Sequence

import structlog

from hwbkptd.arch.perf.nonstop_delivery import NonstopStats
from hwbkptd.arch.perf.nonstop_events import NonstopRing, open_user_breakpoint
from hwbkptd.arch.perf.nonstop_table import Event, NonstopTable, Thread, ThreadSlot
from hwbkptd.arch.perf.percpu import enable, errno_text, event_id
from hwbkptd.core.mechanism import Refusal, SlotWrite
from hwbkptd.core.model import Chunk

__all__ = ["Armer"]

_log = structlog.get_logger("hwbkptd.perf")


class Armer:
    """Turns a thread's table into open, linked events (see the module doc)."""

    def __init__(
        self,
        table: NonstopTable,
        rings: Mapping[int, NonstopRing],
        stats: NonstopStats,
        attach: Callable[[int, int], None],
        before_close: Callable[[Sequence[Event]], None],
    ) -> None:
        self.table = table
        #: cpu -> ring: the CPUs a slot is armed on.
        self.rings = rings
        self.stats = stats
        #: (cpu, fd): send a new event's records into that CPU's ring of the moment.
        self.attach = attach
        #: Told of events about to close (their lost samples are counted first).
        self.before_close = before_close

    def apply_table(self, thread: Thread, write: SlotWrite, now: int) -> list[Refusal]:
        wanted = {
            (pool, index): entry
            for pool, entries in write.pools.items()
            for index, entry in enumerate(entries)
            if entry is not None
        }
        # Free what changed first: the new chunk may need the register the old one held.
        for key, slot in list(thread.slots.items()):
            new = wanted.get(key)
            if new is None or new.chunk != slot.entry.chunk:
                self.close_events(self.table.unlink(slot))
                del thread.slots[key]
        refusals: list[Refusal] = []
        cpus = frozenset(self.rings)
        for key in sorted(wanted):
            entry = wanted[key]
            kept = thread.slots.get(key)
            if kept is not None:
                kept.entry = entry
                kept.hold(now, write.generation)
                continue
            slot = ThreadSlot(thread.tid, key[0], key[1], entry)
            slot.hold(now, write.generation)
            reason = self.arm(thread, slot, cpus)
            if reason:
                refusals.append(Refusal(thread.tid, key[0], key[1], write.generation, reason))
            else:
                thread.slots[key] = slot
        return refusals

    def arm(
        self, thread: Thread, slot: ThreadSlot, cpus: frozenset[int], retry: bool = True
    ) -> str:
        """Adopt carried copies, open own events on the other CPUs: all of them or none."""
        chunk = slot.entry.chunk
        adopted: dict[int, Event] = {}
        for cpu in cpus:
            carried = self.table.adoptable(thread, chunk, cpu)
            if carried is not None:
                adopted[cpu] = carried
        opened: list[Event] = []
        try:
            # An exited thread only routes what it carried (for its buffered samples).
            for cpu in [] if thread.exited else sorted(cpus - adopted.keys()):
                opened.append(self.open_event(thread.tid, thread.pid, chunk, cpu))
        except OSError as exc:
            for event in opened:
                os.close(event.fd)
            if exc.errno == errno.ENOSPC:
                if retry and self.rehome(thread):
                    return self.arm(thread, slot, cpus, retry=False)
                return "external"
            if exc.errno != errno.ESRCH:
                _log.warning("nonstop_breakpoint_refused", tid=thread.tid, error=errno_text(exc))
                return errno_text(exc)
            opened = []  # the thread is gone; its EXIT record is on the way
        for cpu, event in adopted.items():
            self.table.link(slot, cpu, event)
        for event in opened:
            self.table.add_event(event)
            self.table.link(slot, event.cpu, event)
        for event in opened:
            enable(event.fd)
        return ""

    def open_event(self, tid: int, pid: int, chunk: Chunk, cpu: int) -> Event:
        fd, counts_lost = open_user_breakpoint(chunk, tid, cpu)
        try:
            self.attach(cpu, fd)
            eid = event_id(fd)
        except BaseException:
            os.close(fd)
            raise
        return Event(eid, fd, cpu, tid, pid, chunk, time.monotonic_ns(), counts_lost=counts_lost)

    def rehome(self, thread: Thread) -> bool:
        """Free the thread's registers held by events it does not route.

        Each such event gets replaced, for every thread still routed through
        it, by an own event of that thread, then closed (which removes every
        copy of it). True when at least one was closed.
        """
        moved = False
        for stale in self.table.lingering(thread):
            users = [self.table.route[(stale.id, tid)] for tid in sorted(stale.routes)]
            fresh: list[tuple[ThreadSlot, Event]] = []
            try:
                for slot in users:
                    owner = self.table.threads[slot.tid]
                    fresh.append(
                        (slot, self.open_event(slot.tid, owner.pid, stale.chunk, stale.cpu))
                    )
            except OSError as exc:
                _log.info("nonstop_rehome_failed", tid=thread.tid, error=errno_text(exc))
                for _, event in fresh:
                    os.close(event.fd)
                continue
            for slot, event in fresh:
                self.table.add_event(event)
                self.table.link(slot, event.cpu, event)
                enable(event.fd)
            self.close_events([stale])
            self.stats.rehomed += 1
            moved = True
        return moved

    def close_events(self, events: Sequence[Event]) -> None:
        self.before_close(events)
        for event in events:
            if not event.closed:
                self.table.close(event)
                os.close(event.fd)
