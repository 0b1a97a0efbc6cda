"""The native machine's ``MachineHooks``: kernel symbols, up-front refusals, thread owners.

Kernel symbols resolve through /proc/kallsyms (read once, on first use).
Kernel requests are judged against the capabilities ``NativeMechanism``
detected at start (``check_kernel_request``): a kernel exec breakpoint on a
kernel without kprobes is refused before any system call. User-space names
resolve in the target's own binaries (``hwbkptd.names.Resolver``, issue 13), which
also puts user hits in words.
"""

from __future__ import annotations

import os
from pathlib import Path

from hwbkptd.arch.native import NativeMechanism, check_kernel_request
from hwbkptd.arch.perf.kallsyms import KALLSYMS, Kallsyms
from hwbkptd.core.broker_types import BreakpointSpec
from hwbkptd.core.errors import FailedPrecondition, NotFound
from hwbkptd.core.mechanism import MechanismInfo
from hwbkptd.core.model import Access, Scope
from hwbkptd.core.names import Names, Resolved
from hwbkptd.core.policy import ProcessFacts
from hwbkptd.names.resolver import Resolver

__all__ = ["NativeHooks", "process_facts", "thread_group"]


def thread_group(tid: int, proc: Path = Path("/proc")) -> int:
    """The process (Tgid) of a thread, from /proc/TID/status; NotFound ``spec.tid``."""
    try:
        text = (proc / str(tid) / "status").read_text()
    except OSError:
        raise NotFound("spec.tid", f"no thread {tid}") from None
    for line in text.splitlines():
        if line.startswith("Tgid:"):
            return int(line.split(":", 1)[1])
    raise NotFound("spec.tid", f"no thread {tid}")


def process_facts(pid: int, proc: Path = Path("/proc")) -> ProcessFacts:
    """A process's real, effective and saved uids and its executable, for the policy."""
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        raise NotFound("pid", f"no process {pid}") from None
    uids: tuple[int, ...] = ()
    for line in text.splitlines():
        if line.startswith("Uid:"):
            uids = tuple(int(u) for u in line.split()[1:4])
    try:
        exe = os.readlink(proc / str(pid) / "exe")
    except OSError:
        exe = ""  # a kernel thread, or gone meanwhile: no glob can match it
    if not uids:
        raise NotFound("pid", f"no process {pid}")
    return ProcessFacts(pid=pid, uids=uids, exe=exe)


class NativeHooks:
    attaches = True

    @property
    def notify_stopless(self) -> bool:
        """NOTIFY requests are served without stopping (``--notify bpf``/``sample``)."""
        return self._mechanism.notify_stopless

    def __init__(
        self,
        mechanism: NativeMechanism,
        kallsyms_path: Path = KALLSYMS,
        names: Names | None = None,
    ) -> None:
        self._mechanism = mechanism
        self._kallsyms_path = kallsyms_path
        self._kallsyms: Kallsyms | None = None
        self._names: Names = names if names is not None else Resolver()

    @property
    def names(self) -> Names | None:
        return self._names

    def _symbols(self) -> Kallsyms:
        if self._kallsyms is None:
            try:
                self._kallsyms = Kallsyms.load(self._kallsyms_path)
            except OSError as err:
                raise FailedPrecondition(
                    f"kernel symbols cannot be read from {self._kallsyms_path}: {err.strerror}"
                ) from None
        return self._kallsyms

    def resolve(self, scope: Scope, pid: int, symbol: str, access: Access) -> Resolved:
        if scope is not Scope.KERNEL:
            return self._names.resolve(scope, pid, symbol, access)
        address = self._symbols().resolve(symbol, "spec.symbol")
        return Resolved(location=symbol, address=address, length=0, symbol=symbol, by_name=False)

    def check(self, spec: BreakpointSpec) -> None:
        if spec.scope is Scope.KERNEL:
            check_kernel_request(spec.address, spec.access, self._mechanism.caps)
        elif spec.nonstop:
            info = self._mechanism.nonstop.info()
            if not info.available:
                raise FailedPrecondition(f"non-stop mode: {info.reason}")

    def process_of(self, tid: int) -> int:
        return thread_group(tid)

    def process_facts(self, pid: int) -> ProcessFacts:
        return process_facts(pid)

    def mechanisms(self) -> tuple[MechanismInfo, ...]:
        return self._mechanism.mechanisms()

    def notes(self) -> tuple[str, ...]:
        return tuple(
            f"{part.name}: {note}" for part in self._mechanism.mechanisms() for note in part.notes
        )
