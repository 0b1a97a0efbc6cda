"""NativeMechanism: the real machine, routing each table to the mechanism that arms it.

The CPU context table (tid ``CPU_CONTEXT``) goes to the perf helper
(``KernelPerfMechanism``), every thread's table to the ptrace mechanism
(``hwbkptd.arch.ptrace.mechanism.PtraceMechanism``), imported lazily: without
it the composite still serves kernel scope and ``info`` says why threads
cannot be traced.

Non-stop entries of a thread's table (``SlotEntry.nonstop``) go to the perf
non-stop mechanism (``NonstopMechanism``) instead; the rest of the same table
still goes to ptrace, so both share the thread's arbitration. A process
attached for non-stop watches only is never ptraced: its threads are followed
by the non-stop mechanism, and nothing of its tables reaches ptrace until a
plain attach (a request that stops threads) takes it over.

Kernel requests are judged up front by ``check_kernel_request`` (re-exported
here from ``hwbkptd.arch.perf.caps``) against ``NativeMechanism.caps``, the
capabilities detected once at start.

Both mechanisms draw on the same debug registers: the kernel counts a CPU's
slots as its CPU-bound events plus the busiest task's, so a table that shrinks
in one mechanism may be what lets the other grow. ``apply`` therefore runs the
thread tables, then the CPU table, then retries once the thread slots the
kernel refused while the CPU table still held them.
"""

from __future__ import annotations

import importlib
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from hwbkptd.arch.notify_choice import choose_notify
from hwbkptd.arch.perf.caps import PerfCaps, check_kernel_request, detect_caps
from hwbkptd.arch.perf.kernel_mechanism import KernelPerfMechanism
from hwbkptd.arch.perf.nonstop import NonstopMechanism
from hwbkptd.core.errors import BrokerError, FailedPrecondition
from hwbkptd.core.mechanism import (
    MechanismInfo,
    MechanismSink,
    ProcessMechanism,
    Refusal,
    SlotEntry,
    SlotWrite,
)
from hwbkptd.core.model import CPU_CONTEXT

__all__ = [
    "PTRACE_MODULE",
    "NativeMechanism",
    "check_kernel_request",
    "native_available",
    "ptrace_status",
    "split_write",
]

PTRACE_MODULE = "hwbkptd.arch.ptrace.mechanism"
_PTRACE_NEEDED = "the process is followed for non-stop watches only (not ptraced)"


def _import_ptrace() -> tuple[Any, str]:
    try:
        module = importlib.import_module(PTRACE_MODULE)
    except ImportError as exc:
        return None, f"ptrace mechanism not installed ({exc})"
    if not hasattr(module, "PtraceMechanism"):
        return None, f"{PTRACE_MODULE} has no PtraceMechanism"
    return module, ""


def ptrace_status() -> tuple[bool, str]:
    """Whether the ptrace mechanism can work here, without starting it."""
    module, reason = _import_ptrace()
    if module is None:
        return False, reason
    check = getattr(module, "ptrace_available", None)
    if callable(check):
        ok, why = check()
        return bool(ok), str(why)
    return True, ""


def split_write(write: SlotWrite, notify_stopless: bool = False) -> tuple[SlotWrite, SlotWrite]:
    """The (ptrace, non-stop) halves of a thread's table: each keeps its own entries, None
    elsewhere. Kernel entries go to neither: the CPU context's per-CPU events arm them, and
    the kernel already counts those against every thread's debug registers.

    ``notify_stopless``: NOTIFY entries (no holder halts) go to the non-stop half too
    (``--notify bpf`` or ``sample``)."""

    def watching(e: SlotEntry) -> bool:
        return e.nonstop or (notify_stopless and not e.halt)

    def keep(nonstop: bool) -> SlotWrite:
        pools: dict[str, tuple[SlotEntry | None, ...]] = {
            pool: tuple(
                e if e is not None and watching(e) is nonstop and not e.kernel else None
                for e in entries
            )
            for pool, entries in write.pools.items()
        }
        return SlotWrite(pid=write.pid, tid=write.tid, generation=write.generation, pools=pools)

    return keep(False), keep(True)


def _has_entries(write: SlotWrite) -> bool:
    return any(e is not None for entries in write.pools.values() for e in entries)


def native_available(caps: PerfCaps | None = None) -> tuple[bool, str]:
    """Whether ``--machine auto`` can pick the native machine, and why (not)."""
    if sys.platform != "linux":
        return False, f"native mechanisms need Linux, not {sys.platform}"
    machine = platform.machine()
    if machine != "x86_64":
        return False, f"native mechanisms are built for x86_64 only, not {machine}"
    caps = detect_caps() if caps is None else caps
    ptrace_ok, ptrace_reason = ptrace_status()
    kernel_ok = caps.kernel_allowed
    if not ptrace_ok and not kernel_ok:
        return False, f"ptrace: {ptrace_reason}; perf-kernel: {caps.kernel_reason}"
    parts = [
        "ptrace: available" if ptrace_ok else f"ptrace: unavailable ({ptrace_reason})",
        "perf-kernel: available"
        if kernel_ok
        else f"perf-kernel: unavailable ({caps.kernel_reason})",
    ]
    return True, "; ".join(parts)


class NativeMechanism:
    """Both interfaces: tid 0 -> KernelPerfMechanism, other tids -> PtraceMechanism."""

    name = "native"

    def __init__(
        self,
        *,
        arming: str = "auto",
        caps: PerfCaps | None = None,
        kernel: KernelPerfMechanism | None = None,
        ptrace: ProcessMechanism | None = None,
        nonstop: NonstopMechanism | None = None,
        load_ptrace: bool = True,
        notify: str = "ptrace",
    ) -> None:
        self.caps = caps if caps is not None else detect_caps()
        self.kernel = kernel if kernel is not None else KernelPerfMechanism(caps=self.caps)
        choice = choose_notify(notify, self.caps) if nonstop is None else None
        #: Which mechanism serves NOTIFY requests, and why (``--notify``).
        self.notify, self.notify_reason = (
            (choice.name, choice.reason) if choice else (notify, "given")
        )
        if nonstop is None:
            assert choice is not None
            nonstop = choice.build()
        self.nonstop: NonstopMechanism = nonstop
        self.notify_stopless = self.notify in ("bpf", "sample")
        #: Threads whose last table sent to the non-stop mechanism had entries.
        self._nonstop_tids: set[int] = set()
        self._ptrace: ProcessMechanism | None = ptrace
        self._ptrace_reason = "ptrace mechanism not loaded"
        if ptrace is None and load_ptrace:
            self._ptrace, self._ptrace_reason = self._load_ptrace(arming)
        if self._ptrace is not None:
            info = self._ptrace.info()
            # ``reason`` may be set on an available mechanism too (a fallback it took).
            self._ptrace_usable = info.available
            self._ptrace_reason = info.reason
        else:
            self._ptrace_usable = False

    @staticmethod
    def _load_ptrace(arming: str) -> tuple[ProcessMechanism | None, str]:
        module, reason = _import_ptrace()
        if module is None:
            return None, reason
        try:
            return cast(ProcessMechanism, module.PtraceMechanism(arming=arming)), ""
        except BrokerError:
            raise  # a bad --arming is the caller's error, not a missing capability
        except Exception as exc:  # its constructor says why it cannot run here
            return None, f"ptrace mechanism unavailable: {exc}"

    @property
    def ptrace(self) -> ProcessMechanism | None:
        """The ptrace mechanism when it can trace threads here, else None."""
        return self._ptrace if self._ptrace_usable else None

    # --- describe ---------------------------------------------------------------
    def mechanisms(self) -> tuple[MechanismInfo, ...]:
        """One entry per mechanism for ``describe``: ptrace, perf-kernel, perf-nonstop or bpf;
        the last says what serves NOTIFY requests (``--notify``) and why."""
        why = f"--notify {self.notify}: {self.notify_reason}"
        traced = "HALT requests and launch holds" + (
            "" if self.notify_stopless else " and NOTIFY requests"
        )
        ptrace_note = f"serves {traced} ({why})"
        if self._ptrace is not None:
            p = self._ptrace.info()
            notes = (ptrace_note, *p.notes)
            ptrace = MechanismInfo("ptrace", p.available, p.reason, notes, p.arming)
        else:
            ptrace = MechanismInfo("ptrace", False, self._ptrace_reason, (ptrace_note,))
        nonstop = self.nonstop.info()
        serves = "non-stop requests" + (" and NOTIFY requests" if self.notify_stopless else "")
        note = f"serves {serves} ({why})"
        nonstop = MechanismInfo(
            nonstop.name, nonstop.available, nonstop.reason, (note, *nonstop.notes), nonstop.arming
        )
        return (ptrace, self.kernel.info(), nonstop)

    def info(self) -> MechanismInfo:
        parts = self.mechanisms()
        notes: list[str] = []
        for part in parts:
            if part.available:
                state = f"available ({part.reason})" if part.reason else "available"
            else:
                state = f"unavailable: {part.reason}"
            notes.append(f"{part.name}: {state}")
            notes.extend(f"{part.name}: {note}" for note in part.notes)
        unavailable = [f"{p.name}: {p.reason}" for p in parts if not p.available]
        return MechanismInfo(
            name=self.name,
            available=any(p.available for p in parts),
            reason="; ".join(unavailable),
            notes=tuple(notes),
            arming=parts[0].arming,
        )

    # --- Mechanism --------------------------------------------------------------
    def start(self, sink: MechanismSink) -> None:
        self.kernel.start(sink)
        self.nonstop.start(sink)
        if self._ptrace_usable and self._ptrace is not None:
            self._ptrace.start(sink)

    async def apply(self, writes: Sequence[SlotWrite]) -> Sequence[Refusal]:
        cpu = [w for w in writes if w.tid == CPU_CONTEXT]
        traced, nonstop, refusals = self._route([w for w in writes if w.tid != CPU_CONTEXT])
        thread_refusals: Sequence[Refusal] = ()
        if traced:
            thread_refusals = await self._need_ptrace().apply(traced)
        if nonstop:
            refusals.extend(await self.nonstop.apply(nonstop))
        if cpu:
            refusals.extend(await self.kernel.apply(cpu))
        if cpu and thread_refusals:
            refused = {r.tid for r in thread_refusals}
            thread_refusals = await self._need_ptrace().apply(
                [w for w in traced if w.tid in refused]
            )
        refusals.extend(thread_refusals)
        return refusals

    def _route(
        self, writes: Sequence[SlotWrite]
    ) -> tuple[list[SlotWrite], list[SlotWrite], list[Refusal]]:
        """Thread tables split into what ptrace arms and what the non-stop mechanism arms."""
        traced: list[SlotWrite] = []
        nonstop: list[SlotWrite] = []
        refusals: list[Refusal] = []
        for write in writes:
            stopping, watching = split_write(write, self.notify_stopless)
            if _has_entries(watching) or write.tid in self._nonstop_tids:
                nonstop.append(watching)
                if _has_entries(watching):
                    self._nonstop_tids.add(write.tid)
                else:
                    self._nonstop_tids.discard(write.tid)
            if not self._is_nonstop_only(write.pid):
                traced.append(stopping)
                continue
            # Not ptraced: a stopping entry cannot be armed here. The broker attaches for
            # real before placing one, so this is a race with a detach; say so.
            for pool, entries in stopping.pools.items():
                for index, entry in enumerate(entries):
                    if entry is not None:
                        refusals.append(
                            Refusal(write.tid, pool, index, write.generation, _PTRACE_NEEDED)
                        )
        return traced, nonstop, refusals

    def _is_nonstop_only(self, pid: int) -> bool:
        # Not a set of our own: the core decided (the ``nonstop`` flag of ``attach``, from
        # its ProcessTable) and the non-stop mechanism follows such a process reporting its
        # threads, and forgets it when it exits or is taken over by ptrace.
        return self.nonstop.follows_alone(pid)

    async def resume(self, tid: int) -> None:
        await self._need_ptrace().resume(tid)

    async def read_memory(self, pid: int, address: int, length: int) -> bytes:
        if pid == 0:
            return await self.kernel.read_memory(pid, address, length)
        if self._is_nonstop_only(pid):
            return await self.nonstop.read_memory(pid, address, length)
        return await self._need_ptrace().read_memory(pid, address, length)

    async def attach(
        self,
        pid: int,
        follow_fork: bool = False,
        nonstop: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> Sequence[int]:
        if nonstop and (self._is_nonstop_only(pid) or not self.nonstop.watching(pid)):
            # Followed without tracing: nothing is seized one thread at a time.
            return await self.nonstop.watch(pid, report_threads=True)
        tids = await self._need_ptrace().attach(pid, follow_fork, progress=progress)
        if self._is_nonstop_only(pid):
            # ptrace reports the threads from now on; the non-stop mechanism keeps its
            # events and follows births only for its own bookkeeping.
            await self.nonstop.watch(pid, report_threads=False)
        return tids

    async def detach(self, pid: int) -> None:
        try:
            if not self._is_nonstop_only(pid):
                await self._need_ptrace().detach(pid)
        finally:
            if self.nonstop.watching(pid):
                await self.nonstop.unwatch(pid)

    async def untrace(self, pid: int) -> None:
        """Stop tracing ``pid``, keep following it: the non-stop mechanism reports its
        threads from before ptrace lets go (the broker ignores a thread told twice)."""
        await self.nonstop.watch(pid, report_threads=True)
        await self._need_ptrace().detach(pid)

    async def launch(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str, follow_fork: bool = False
    ) -> int:
        return await self._need_ptrace().launch(argv, env, cwd, follow_fork)

    async def release(self, pid: int) -> None:
        await self._need_ptrace().release(pid)

    async def kill_launched(self, pid: int) -> None:
        await self._need_ptrace().kill_launched(pid)

    async def close(self) -> None:
        try:
            if self._ptrace_usable and self._ptrace is not None:
                await self._ptrace.close()
        finally:
            try:
                await self.nonstop.close()
            finally:
                await self.kernel.close()

    async def wait_cpu_stable(self) -> bool:
        """See ``KernelPerfMechanism.wait_cpu_stable``."""
        return await self.kernel.wait_cpu_stable()

    def _need_ptrace(self) -> ProcessMechanism:
        if self._ptrace is None or not self._ptrace_usable:
            raise FailedPrecondition(
                f"threads cannot be traced on this machine: {self._ptrace_reason}"
            )
        return self._ptrace
