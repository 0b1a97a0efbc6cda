"""The simulated machine: processes, threads, memory and slot tables in memory.

It implements the ``Mechanism`` protocol (slot arming) with any pool layout, so
the whole broker runs without privileges or debug hardware. It does not
implement ``ProcessControl``: its processes are created through the sim
service, and the broker refuses attach, launch and release on it. Accesses are injected with
``touch`` (the sim gRPC service calls it): the sim writes the value, finds the
armed slots the access hits, reports them to the broker like a real trap
would, and halts the thread when a HALT slot trapped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hwbkptd.arch import arm64, x86_64
from hwbkptd.arch.sim_memory import SimMemory, check_region
from hwbkptd.core.arch_port import Arch
from hwbkptd.core.clock import Clock, SystemClock
from hwbkptd.core.errors import FailedPrecondition, InvalidArgument, NotFound
from hwbkptd.core.mechanism import (
    HitReport,
    MechanismInfo,
    MechanismSink,
    Refusal,
    SlotEntry,
    SlotWrite,
)
from hwbkptd.core.model import CPU_CONTEXT, Access

__all__ = ["FIRST_PID", "MAX_TOUCH_SIZE", "SimMechanism"]

FIRST_PID = 1000
#: The largest single injected access; real accesses are at most a cache line or so.
MAX_TOUCH_SIZE = 4096
# Made-up instruction pointers for accesses that do not name one: a plausible .text.
_FAKE_TEXT = 0x401000

_MATCHES: dict[Access, frozenset[Access]] = {
    Access.EXEC: frozenset({Access.EXEC}),
    Access.WRITE: frozenset({Access.WRITE, Access.READ_WRITE}),
    Access.READ: frozenset({Access.READ, Access.READ_WRITE}),
}


def _kernel_start(arch: Arch | None, pools: Mapping[str, int]) -> int:
    if arch is not None:
        return arm64.KERNEL_SPACE_START if arch.name == "arm64" else x86_64.KERNEL_SPACE_START
    # Layout without an arch: one "dr" pool is x86_64, the exec/data pair arm64.
    return x86_64.KERNEL_SPACE_START if x86_64.POOL in pools else arm64.KERNEL_SPACE_START


class SimMechanism:
    """``SimMechanism(arch, pools)`` or ``SimMechanism(pools)`` (arch guessed from the pools)."""

    name = "sim"

    def __init__(
        self,
        arch: Arch | Mapping[str, int],
        pools: Mapping[str, int] | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(arch, Mapping):
            pools, arch_ = arch, None
        else:
            arch_ = arch
        if pools is None:
            raise TypeError("SimMechanism needs the pool layout")
        self.pools: dict[str, int] = dict(pools)
        self.kernel_start = _kernel_start(arch_, self.pools)
        self._clock: Clock = clock or SystemClock()
        self._sink: MechanismSink | None = None
        self._next_id = FIRST_PID
        self._procs: dict[int, list[int]] = {}
        self._threads: dict[int, int] = {}
        self._memory = SimMemory(self.kernel_start)
        self._tables: dict[int, SlotWrite] = {}
        self._halted: set[int] = set()
        #: New threads held before their first instruction until their first table arrives.
        self._starting: set[int] = set()
        self._reserved: dict[tuple[int, str], int] = {}
        self._touches = 0
        self.closed = False

    # --- Mechanism --------------------------------------------------------------
    def info(self) -> MechanismInfo:
        return MechanismInfo(
            name=self.name,
            available=True,
            notes=("simulated machine: accesses are injected through the sim service",),
            arming="simulated",
        )

    def start(self, sink: MechanismSink) -> None:
        self._sink = sink

    async def apply(self, writes: Sequence[SlotWrite]) -> Sequence[Refusal]:
        refusals: list[Refusal] = []
        for write in writes:
            if write.tid != CPU_CONTEXT and write.tid not in self._threads:
                continue  # the thread is gone; its table went with it
            pools: dict[str, tuple[SlotEntry | None, ...]] = {}
            for pool, entries in write.pools.items():
                room = self.pools.get(pool, 0) - self._reserved.get((write.tid, pool), 0)
                armed: list[SlotEntry | None] = []
                for index, entry in enumerate(entries):
                    if entry is not None and room <= 0:
                        # What a kernel says when another user holds the register: ENOSPC.
                        refusals.append(Refusal(write.tid, pool, index, write.generation))
                        armed.append(None)
                        continue
                    if entry is not None:
                        room -= 1
                    armed.append(entry)
                pools[pool] = tuple(armed)
            self._tables[write.tid] = SlotWrite(write.pid, write.tid, write.generation, pools)
            self._starting.discard(write.tid)
        return refusals

    async def resume(self, tid: int) -> None:
        self._halted.discard(tid)

    async def read_memory(self, pid: int, address: int, length: int) -> bytes:
        return self._memory.read(pid, address, length)

    async def close(self) -> None:
        self._tables.clear()
        self._halted.clear()
        self.closed = True

    # --- the sim operations -------------------------------------------------------
    def spawn_process(self, threads: int = 1) -> tuple[int, tuple[int, ...]]:
        """A new process with ``threads`` threads; the first tid equals the pid."""
        pid, tids = self.new_process(threads)
        for tid in tids:
            self._add_thread(pid, tid)
        return pid, tids

    def new_process(self, threads: int) -> tuple[int, tuple[int, ...]]:
        """A process and its thread ids, none started yet: ``start_thread`` each, first first."""
        if threads < 1:
            raise InvalidArgument("threads", f"a process needs at least one thread, got {threads}")
        self._sink_or_raise()
        pid = self._next_id
        self._next_id += threads
        self._procs[pid] = []
        self._memory.add_process(pid)
        return pid, tuple(range(pid, pid + threads))

    def start_thread(self, pid: int, tid: int) -> None:
        self._process(pid)
        self._add_thread(pid, tid)

    def spawn_thread(self, pid: int) -> int:
        self._process(pid)
        self._sink_or_raise()
        tid = self._next_id
        self._next_id += 1
        self._add_thread(pid, tid)
        return tid

    def end_thread(self, tid: int) -> None:
        """End one thread; ending the last thread of a process ends the process (exit 0)."""
        pid = self._thread(tid)
        sink = self._sink_or_raise()
        self._drop_thread(tid)
        sink.on_thread_exited(pid, tid, 0)
        if not self._procs[pid]:
            self._drop_process(pid)
            sink.on_process_exited(pid, 0)

    def end_process(self, pid: int, exit_code: int = 0) -> None:
        tids = list(self._process(pid))
        sink = self._sink_or_raise()
        for tid in tids:
            self._drop_thread(tid)
        self._drop_process(pid)
        sink.on_process_exited(pid, exit_code)

    def exec_process(self, pid: int) -> None:
        """The process replaces its program: a fresh address space, the same pid."""
        self._process(pid)
        sink = self._sink_or_raise()
        self._memory.add_process(pid)
        sink.on_process_exec(pid)

    def write_memory(self, pid: int, address: int, data: bytes) -> None:
        """Set memory without an access (no hit): the state a program starts from."""
        self._memory.write(pid, address, data)

    def reserve_external(self, tid: int, pool: str, count: int) -> None:
        """Pretend something outside the broker holds ``count`` slots of ``pool`` in ``tid``."""
        if pool not in self.pools:
            raise InvalidArgument("pool", f"no pool {pool!r}")
        if not 0 <= count <= self.pools[pool]:
            raise InvalidArgument("count", f"must be 0..{self.pools[pool]}, got {count}")
        self._reserved[(tid, pool)] = count

    def touch(
        self,
        pid: int,
        tid: int,
        address: int,
        access: Access,
        value: bytes = b"",
        size: int = 0,
        ip: int = 0,
    ) -> list[HitReport]:
        """One access by a thread; reports (and returns) the hits it caused."""
        procs = self._process(pid)
        if tid == 0:
            if not procs:
                raise NotFound("tid", f"process {pid} has no live thread")
            tid = procs[0]
        if self._threads.get(tid) != pid:
            raise NotFound("tid", f"no thread {tid} in process {pid}")
        if tid in self._halted:
            raise FailedPrecondition(f"thread {tid} is halted")
        if tid in self._starting:
            # Like a traced thread held at birth: it runs once the broker has armed it.
            raise FailedPrecondition(f"thread {tid} has not started: its slots are not armed yet")
        if access not in _MATCHES:
            raise InvalidArgument("access", "an access is a write, a read or an exec")
        if value and access is not Access.WRITE:
            raise InvalidArgument("value", "only a write carries a value")
        size = size or len(value) or 1
        if value and size != len(value):
            raise InvalidArgument(
                "size", f"size {size} differs from the value's {len(value)} bytes"
            )
        if not 1 <= size <= MAX_TOUCH_SIZE:
            raise InvalidArgument("size", f"must be 1..{MAX_TOUCH_SIZE}, got {size}")
        check_region(address, size)
        if value:
            self._memory.write(pid, address, value)
        self._touches += 1
        if ip == 0:
            ip = address if access is Access.EXEC else _FAKE_TEXT + 4 * (self._touches % 1024)
        reports = self._hits(pid, tid, address, size, access, ip)
        if reports:
            self._sink_or_raise().on_hits(reports)
        return reports

    # --- views for tests and the service -------------------------------------------
    def halted(self, tid: int) -> bool:
        return tid in self._halted

    def starting(self, tid: int) -> bool:
        """True until the thread's first table arrives (it has run no instruction yet)."""
        return tid in self._starting

    def table(self, tid: int) -> SlotWrite | None:
        """The table armed now in a thread (or the CPU context), refused slots left out."""
        return self._tables.get(tid)

    def processes(self) -> dict[int, tuple[int, ...]]:
        return {pid: tuple(tids) for pid, tids in self._procs.items()}

    # --- internals ---------------------------------------------------------------
    def _hits(
        self, pid: int, tid: int, address: int, size: int, access: Access, ip: int
    ) -> list[HitReport]:
        wanted = _MATCHES[access]
        end = address + size
        found: list[tuple[int, str, int, int, SlotEntry]] = []
        seen = set()
        contexts = [tid]
        if address >= self.kernel_start:
            contexts.append(CPU_CONTEXT)
        for context in contexts:
            table = self._tables.get(context)
            if table is None:
                continue
            for pool, entries in table.pools.items():
                for index, entry in enumerate(entries):
                    if entry is None or entry.chunk.access not in wanted:
                        continue
                    chunk = entry.chunk
                    if chunk.address >= end or address >= chunk.address + chunk.length:
                        continue
                    # Kernel chunks sit in thread tables too: count each chunk once.
                    if chunk in seen:
                        continue
                    seen.add(chunk)
                    found.append((context, pool, index, table.generation, entry))
        if not found:
            return []
        halted = any(entry.halt for *_, entry in found)
        if halted:
            self._halted.add(tid)
        now = self._clock.time_ns()
        reports = []
        for context, pool, index, generation, entry in found:
            values = tuple(self._memory.read(pid, at, length) for at, length in entry.regions)
            reports.append(
                HitReport(
                    pid=pid if context != CPU_CONTEXT else 0,
                    tid=context,
                    pool=pool,
                    index=index,
                    generation=generation,
                    ip=ip,
                    address=address,
                    time_ns=now,
                    cpu=0,
                    access=access,
                    values=values,
                    halted=halted,
                )
            )
        return reports

    def _process(self, pid: int) -> list[int]:
        procs = self._procs.get(pid)
        if procs is None:
            raise NotFound("pid", f"no process {pid}")
        return procs

    def _thread(self, tid: int) -> int:
        pid = self._threads.get(tid)
        if pid is None:
            raise NotFound("tid", f"no thread {tid}")
        return pid

    def _add_thread(self, pid: int, tid: int) -> None:
        self._procs[pid].append(tid)
        self._threads[tid] = pid
        self._starting.add(tid)
        self._sink_or_raise().on_thread_started(pid, tid)

    def _drop_thread(self, tid: int) -> None:
        pid = self._threads.pop(tid)
        self._procs[pid].remove(tid)
        self._tables.pop(tid, None)
        self._halted.discard(tid)
        self._starting.discard(tid)
        for key in [k for k in self._reserved if k[0] == tid]:
            del self._reserved[key]

    def _drop_process(self, pid: int) -> None:
        del self._procs[pid]
        self._memory.drop_process(pid)

    def _sink_or_raise(self) -> MechanismSink:
        if self._sink is None:
            raise FailedPrecondition("the simulated machine is not started")
        return self._sink
