"""The two small interfaces between the core and the machine: slot arming, process control.

The core hands a ``Mechanism`` new slot tables and gets hits, refusals and thread
life-cycle news back through a ``MechanismSink``. A machine that can also take
processes (attach, launch, release, detach) implements ``ProcessControl`` too;
the simulated machine does not (its processes come from the sim service), and
the broker then refuses the process calls. Mechanisms live in ``hwbkptd.arch``;
the core never imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from hwbkptd.core.model import Access, Chunk, Filter

__all__ = [
    "HitReport",
    "Mechanism",
    "MechanismInfo",
    "MechanismSink",
    "ProcessControl",
    "ProcessMechanism",
    "Refusal",
    "SlotEntry",
    "SlotWrite",
    "Untracing",
]


@dataclass(frozen=True, slots=True)
class SlotEntry:
    """What one slot should hold.

    ``regions`` are the (address, length) regions of the requests holding the
    slot: the mechanism reads them when the slot traps, so the core can report
    each owner's value. ``halt`` asks the mechanism to keep the thread stopped
    after a trap until ``resume``; otherwise it resumes at once, without waiting
    for the event loop.
    """

    chunk: Chunk
    regions: tuple[tuple[int, int], ...] = ()
    halt: bool = False
    #: Every holder asked for non-stop mode: sample with perf, never stop the thread.
    nonstop: bool = False
    #: A holder wants the kernel call chain of each hit (CPU context only).
    call_chain: bool = False
    #: The holders are kernel requests. In a thread's table such an entry only reserves
    #: the slot: the CPU context's events arm it, so thread mechanisms leave it alone.
    kernel: bool = False
    #: Per region (holder), the holder's value filter when it has one (changed_only or
    #: equals), else None: a mechanism may evaluate them at the trap when every holder
    #: has one, as long as it still counts every hit (HitReport.skipped).
    value_filters: tuple[Filter | None, ...] = ()


@dataclass(frozen=True, slots=True)
class SlotWrite:
    """The complete new table of one thread (or of the CPU context, tid 0)."""

    pid: int
    tid: int
    generation: int
    pools: Mapping[str, tuple[SlotEntry | None, ...]]


@dataclass(frozen=True, slots=True)
class Refusal:
    """The kernel refused a slot (ENOSPC): something outside the broker holds it."""

    tid: int
    pool: str
    index: int
    generation: int
    reason: str = "external"


@dataclass(slots=True)
class HitReport:
    """One trap, attributed to a slot of a table generation.

    Not frozen, for speed (one per trap; a frozen dataclass's __init__ costs about 8
    times as much); nobody changes one after it is built.
    """

    pid: int
    tid: int
    pool: str
    index: int
    generation: int
    ip: int
    address: int
    #: When the trap happened, wall-clock ns since the epoch (the event's time).
    time_ns: int
    cpu: int = -1
    #: None where the hardware does not say (x86 DR6 does not tell read from write).
    access: Access | None = None
    #: Values of the slot entry's regions after the access, in the entry's order.
    values: tuple[bytes, ...] = ()
    halted: bool = False
    #: True when values were read after the thread ran on (non-stop mode).
    values_late: bool = False
    ip_symbol: str = ""
    #: For hits attributed to the CPU context (tid 0): the thread that was running, if known.
    task_tid: int = 0
    #: Kernel call chain (innermost first) and its symbols, when the slot asked for it.
    call_chain: tuple[int, ...] = ()
    call_chain_symbols: tuple[str, ...] = ()
    #: Hits of the slot not reported before this one (filtered in the kernel); -1 when
    #: this hit was already counted that way (records of two CPUs crossed).
    skipped: int = 0
    #: Only ``skipped`` counts: no hit is reported (the kernel filtered the rest).
    count_only: bool = False
    #: Values before the access, read at the trap, when the mechanism knows them.
    old_values: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class MechanismInfo:
    name: str
    available: bool
    reason: str = ""
    notes: tuple[str, ...] = ()
    arming: str = ""


class MechanismSink(Protocol):
    """Implemented by the broker; mechanisms call it on the event loop thread."""

    def on_hits(self, hits: Sequence[HitReport]) -> None: ...

    def on_hits_lost(self, tid: int, count: int) -> None: ...

    def on_thread_started(self, pid: int, tid: int) -> None:
        """A new thread exists and is held stopped until a SlotWrite for it is applied."""

    def on_thread_exited(self, pid: int, tid: int, exit_code: int) -> None: ...

    def on_process_exited(self, pid: int, exit_code: int) -> None: ...

    def on_process_exec(self, pid: int) -> None: ...

    def on_refusals(self, refusals: Sequence[Refusal]) -> None: ...


class Mechanism(Protocol):
    """Arms slot tables. Every method is called on the event loop."""

    name: str

    def info(self) -> MechanismInfo: ...

    def start(self, sink: MechanismSink) -> None: ...

    async def apply(self, writes: Sequence[SlotWrite]) -> Sequence[Refusal]:
        """Make these tables real, all of them before returning; return what the kernel refused."""

    async def resume(self, tid: int) -> None:
        """Let a thread halted by a HALT slot run again."""

    async def read_memory(self, pid: int, address: int, length: int) -> bytes: ...

    async def close(self) -> None: ...


@runtime_checkable
class ProcessControl(Protocol):
    """Takes processes under the machine and lets them go. Called on the event loop."""

    async def attach(
        self,
        pid: int,
        follow_fork: bool = False,
        nonstop: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> Sequence[int]:
        """Put a process under the mechanism; returns its tids. Tables follow via apply.

        ``nonstop``: follow the process for non-stop watches only, never stopping or
        tracing it (so it works beside another debugger); a later plain attach upgrades.
        ``progress(done, total)``: called on the event loop as threads are taken, now and
        then (a mechanism that takes them all at once may never call it).
        """

    async def detach(self, pid: int) -> None: ...

    async def launch(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str, follow_fork: bool = False
    ) -> int:
        """Start a program held at its first instruction; its threads are reported as started."""

    async def release(self, pid: int) -> None:
        """Let a launched process run its first instruction."""

    async def kill_launched(self, pid: int) -> None:
        """End a launch never released (its program killed before its first instruction)
        and reap it; returns once it has ended."""


class ProcessMechanism(Mechanism, ProcessControl, Protocol):
    """Both interfaces: what the native machine and its ptrace part implement."""


@runtime_checkable
class Untracing(Protocol):
    """A machine that can stop tracing a process and keep following it (issue 11: a process
    is ptraced only while a HALT request or a launch hold needs it)."""

    async def untrace(self, pid: int) -> None:
        """Detach ptrace from ``pid``; its non-stop watches (BPF) go on, its threads run."""
        ...
