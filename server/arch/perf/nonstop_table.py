"""The non-stop mechanism's bookkeeping: events, what each thread carries, who a sample is for.

Pure: no system calls. ``nonstop.py`` opens and closes the events this table
describes and asks it what to do.

Why "carries": a breakpoint event opened with ``inherit`` on thread T is
copied into every thread T creates afterwards (and their threads in turn).
A copy occupies a real debug register of its thread and samples into the same
ring under the ORIGINAL event's id, with the writing thread's tid. So a thread
carries its own events plus the copies it was born with, and a sample is
attributed by the pair (event id, tid): ``route`` maps the pairs the broker
asked for to that thread's slot. A newborn thread's first table *adopts* the
carried copy of a chunk instead of opening a second event for it (which would
cost a second register and double the hits). Copies nobody routes are
"lingering": they still hold a register of their thread until their event is
closed, which is why an event is closed as soon as no route uses it.

Whether a newborn carries an event is decided by time: the event must have
been open (its open returned) before the FORK record's time. An event whose
open raced the clone within microseconds is counted as not carried: the
thread then gets its own event (at worst one extra register and stray
duplicates, never a missed hit).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from hwbkptd.arch.perf.generations import GenerationHistory
from hwbkptd.arch.perf.ring import Sample
from hwbkptd.core.mechanism import SlotEntry
from hwbkptd.core.model import Chunk

__all__ = ["BUFFER_LIMIT", "Event", "NonstopTable", "Thread", "ThreadSlot"]

#: Samples kept per newborn thread while its first table is not applied.
BUFFER_LIMIT = 65536


@dataclass(eq=False, slots=True)
class Event:
    """One breakpoint event opened on ``owner`` (a tid) for ``cpu``."""

    id: int
    fd: int
    cpu: int
    owner: int
    pid: int
    chunk: Chunk
    #: CLOCK_MONOTONIC ns once its open returned: threads born later carry a copy.
    opened_ns: int
    #: Threads whose slots are attributed through this event (its reference count).
    routes: set[int] = field(default_factory=set)
    closed: bool = False
    #: The kernel counts its lost samples (PERF_FORMAT_LOST); how many were reported.
    counts_lost: bool = False
    lost: int = 0


@dataclass(slots=True)
class ThreadSlot(GenerationHistory):
    """One installed non-stop slot of a thread: the event serving it on each CPU."""

    tid: int
    pool: str
    index: int
    entry: SlotEntry
    events: dict[int, Event] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class Thread:
    pid: int
    tid: int
    #: Events present on the thread: its own and the copies it was born with.
    carries: list[Event] = field(default_factory=list)
    slots: dict[tuple[str, int], ThreadSlot] = field(default_factory=dict)
    #: Born while its process was watched and no table of its own applied yet.
    awaiting: bool = False
    buffer: list[Sample] = field(default_factory=list)
    #: Exited while awaiting: kept (no registers) until its table comes or a deadline passes.
    exited: bool = False


class NonstopTable:
    """Threads, events and routes of every watched process."""

    def __init__(self, buffer_limit: int = BUFFER_LIMIT) -> None:
        self.buffer_limit = buffer_limit
        self.threads: dict[int, Thread] = {}
        self.route: dict[tuple[int, int], ThreadSlot] = {}
        #: Open events by id, and closed ones until ``forget_retired`` (samples may remain).
        self.ids: dict[int, Event] = {}
        self._retired: list[int] = []
        self.strays = 0
        #: Buffered samples dropped over ``buffer_limit``.
        self.overflow = 0

    # --- threads ---------------------------------------------------------------
    def add_thread(self, pid: int, tid: int) -> Thread | None:
        """A thread found by listing its process; None when already known."""
        if tid in self.threads:
            return None
        thread = Thread(pid, tid)
        self.threads[tid] = thread
        return thread

    def born(self, pid: int, tid: int, ptid: int, time_ns: int) -> Thread | None:
        """A thread created by ``ptid`` at ``time_ns`` (a FORK record); None if known."""
        if tid in self.threads:
            return None
        creator = self.threads.get(ptid)
        carries = (
            [e for e in creator.carries if not e.closed and e.opened_ns < time_ns]
            if creator is not None
            else []
        )
        # Only a thread carrying events can write samples before its table comes.
        thread = Thread(pid, tid, carries=carries, awaiting=bool(carries))
        self.threads[tid] = thread
        return thread

    def pid_threads(self, pid: int) -> list[Thread]:
        return [t for t in self.threads.values() if t.pid == pid]

    def remove_thread(self, tid: int) -> list[Event]:
        """Forget a thread; returns the events no route uses any more (to close)."""
        thread = self.threads.pop(tid, None)
        if thread is None:
            return []
        orphans: list[Event] = []
        for slot in thread.slots.values():
            orphans.extend(self.unlink(slot))
        thread.slots.clear()
        thread.buffer.clear()
        return orphans

    # --- events and routes -----------------------------------------------------
    def add_event(self, event: Event) -> None:
        self.ids[event.id] = event
        owner = self.threads.get(event.owner)
        if owner is not None:
            owner.carries.append(event)

    def link(self, slot: ThreadSlot, cpu: int, event: Event) -> None:
        slot.events[cpu] = event
        event.routes.add(slot.tid)
        self.route[(event.id, slot.tid)] = slot

    def unlink(self, slot: ThreadSlot, cpus: Iterable[int] | None = None) -> list[Event]:
        """Drop the slot's routes (on ``cpus``, default all); events left unused are returned."""
        orphans: list[Event] = []
        for cpu in list(slot.events) if cpus is None else [c for c in cpus if c in slot.events]:
            event = slot.events.pop(cpu)
            event.routes.discard(slot.tid)
            self.route.pop((event.id, slot.tid), None)
            if not event.routes and not event.closed:
                orphans.append(event)
        return orphans

    def close(self, event: Event) -> None:
        """Mark closed (the caller closes the fd); its id stays known until the next drain."""
        if event.closed:
            return
        event.closed = True
        for tid in list(event.routes):
            slot = self.route.pop((event.id, tid), None)
            if slot is not None and slot.events.get(event.cpu) is event:
                del slot.events[event.cpu]
        event.routes.clear()
        self._retired.append(event.id)

    def forget_retired(self) -> None:
        if not self._retired:
            return
        for eid in self._retired:
            self.ids.pop(eid, None)
        self._retired.clear()
        for thread in self.threads.values():
            thread.carries = [e for e in thread.carries if not e.closed]

    def adoptable(self, thread: Thread, chunk: Chunk, cpu: int) -> Event | None:
        """A copy (or own event) of ``chunk`` on ``cpu`` the thread carries but does not route."""
        for event in thread.carries:
            if (
                not event.closed
                and event.cpu == cpu
                and event.chunk == chunk
                and thread.tid not in event.routes
            ):
                return event
        return None

    def lingering(self, thread: Thread) -> list[Event]:
        """Carried events the thread does not route: they hold its registers for nothing."""
        return [e for e in thread.carries if not e.closed and thread.tid not in e.routes]

    def events_of(self, pid: int) -> list[Event]:
        return [e for e in self.ids.values() if e.pid == pid and not e.closed]

    # --- samples ---------------------------------------------------------------
    def attribute(self, sample: Sample) -> ThreadSlot | None:
        """The slot a sample is a hit for; else it is buffered (newborn) or counted a stray."""
        slot = self.route.get((sample.id, sample.tid))
        if slot is not None:
            return slot
        thread = self.threads.get(sample.tid)
        if thread is not None and thread.awaiting and sample.id in self.ids:
            if len(thread.buffer) < self.buffer_limit:
                thread.buffer.append(sample)
            else:
                self.overflow += 1
            return None
        self.strays += 1
        return None

    def release_buffered(self, thread: Thread) -> list[tuple[Sample, ThreadSlot]]:
        """The thread's first table is applied: its buffered samples, attributed (or strays)."""
        thread.awaiting = False
        out: list[tuple[Sample, ThreadSlot]] = []
        for sample in thread.buffer:
            slot = self.route.get((sample.id, sample.tid))
            if slot is None:
                self.strays += 1
            else:
                out.append((sample, slot))
        thread.buffer = []
        return out
