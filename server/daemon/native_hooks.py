"""The native machine's ``MachineHooks``: kernel symbols, up-front refusals, thread owners.

Kernel symbols resolve through /proc/kallsyms (read once, on first use).
Kernel requests are judged against the capabilities ``NativeMechanism``
detected at start (``check_kernel_request``): a kernel exec breakpoint on a
kernel without kprobes is refused before any system call. User-space symbols
need an ELF reader and come with a later issue.
"""

from __future__ import annotations

import os
from pathlib import Path

from hwbkptd.arch.native import NativeMechanism, check_kernel_request
from hwbkptd.arch.perf.kallsyms import KALLSYMS, Kallsyms
from hwbkptd.core.broker_types import BreakpointSpec
from hwbkptd.core.errors import FailedPrecondition, NotFound
from hwbkptd.core.mechanism import MechanismInfo
from hwbkptd.core.model import Scope
from hwbkptd.core.policy import ProcessFacts

__all__ = ["USER_SYMBOLS", "NativeHooks", "process_facts", "thread_group"]

USER_SYMBOLS = "user-space symbols are not supported yet: give the address"


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

    def __init__(self, mechanism: NativeMechanism, kallsyms_path: Path = KALLSYMS) -> None:
        self._mechanism = mechanism
        self._kallsyms_path = kallsyms_path
        self._kallsyms: Kallsyms | None = None

    def _symbols(self) -> Kallsyms:
        if self._kallsyms is None:
            try:
                self._kallsyms = Kallsyms.load(self._kallsyms_path)
            except OSError as err:
                raise FailedPrecondition(
                    f"kernel symbols cannot be read from {self._kallsyms_path}: {err.strerror}"
                ) from None
        return self._kallsyms

    def resolve(self, scope: Scope, pid: int, symbol: str) -> int:
        if scope is not Scope.KERNEL:
            raise FailedPrecondition(USER_SYMBOLS)
        return self._symbols().resolve(symbol, "spec.symbol")

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
