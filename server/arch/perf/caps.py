"""What this kernel and this process allow the perf helper, decided once at start.

Kernel requests are judged against these cached facts (``check_kernel_request``)
before any system call: a kernel exec breakpoint on a kernel without kprobes is
refused up front, as is a kernel request when perf would answer EACCES.

Sources: ``/sys/bus/event_source/devices/breakpoint`` (the breakpoint PMU),
``/proc/sys/kernel/perf_event_paranoid``, ``CapEff`` in ``/proc/self/status``
(CAP_PERFMON is 38, CAP_SYS_ADMIN 21) and, for kprobes, the kernel config
(``/proc/config.gz`` or ``/boot/config-RELEASE``) or else the files kprobes
creates. x86 refuses kernel exec breakpoints without CONFIG_KPROBES
(``hw_breakpoint_arch_parse`` returns EINVAL), so kprobes decide them.

One fact cannot be read from a file: whether the kernel accepts a breakpoint on
a kernel address at all. Some kernels refuse every one with EPERM even to root
with CAP_SYS_ADMIN (seen on this project's own VM from kernel 6.18.44-fc-v1252
on), while CPU-wide events on user addresses still open. ``probe_kernel_addresses``
asks the kernel once, with a disabled event that can never fire.
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hwbkptd.core.errors import FailedPrecondition, PermissionDenied
from hwbkptd.core.model import Access

__all__ = [
    "CAP_PERFMON",
    "CAP_SYS_ADMIN",
    "KERNEL_EXEC_REFUSED",
    "PerfCaps",
    "check_kernel_request",
    "detect_caps",
    "kprobes_from_config",
    "parse_cap_eff",
    "probe_kernel_addresses",
]

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38

KERNEL_EXEC_REFUSED = "kernel exec breakpoints need kprobes, which this kernel lacks"

_KPROBES_PATHS = (
    "sys/kernel/debug/kprobes",
    "proc/sys/debug/kprobes-optimization",
    "sys/kernel/tracing/kprobe_events",
)


@dataclass(frozen=True, slots=True)
class PerfCaps:
    #: perf_event_open exists (``perf_event_paranoid`` is there).
    perf_events: bool
    #: The ``breakpoint`` PMU is registered.
    breakpoint_pmu: bool
    paranoid: int | None
    cap_perfmon: bool
    cap_sys_admin: bool
    #: Kernel exec breakpoints are possible (kprobes configured).
    kprobes: bool
    #: How ``kprobes`` was decided, for ``describe``.
    kprobes_evidence: str
    #: Why the kernel refused a breakpoint on a kernel address ("" when it did not).
    kernel_addresses_refused: str = ""

    @property
    def perfmon_capable(self) -> bool:
        return self.cap_perfmon or self.cap_sys_admin

    @property
    def cpu_wide_allowed(self) -> bool:
        """CPU-wide breakpoint events (any address): CAP_PERFMON or paranoid <= 0."""
        if not (self.perf_events and self.breakpoint_pmu):
            return False
        return self.perfmon_capable or (self.paranoid is not None and self.paranoid <= 0)

    @property
    def cpu_wide_reason(self) -> str:
        """Why CPU-wide events cannot be opened ("" when they can)."""
        if not self.perf_events:
            return "the kernel has no perf events (CONFIG_PERF_EVENTS)"
        if not self.breakpoint_pmu:
            return "the kernel has no perf breakpoint events (CONFIG_HAVE_HW_BREAKPOINT)"
        if not self.cpu_wide_allowed:
            return (
                "kernel breakpoints need CAP_PERFMON or CAP_SYS_ADMIN, or"
                f" kernel.perf_event_paranoid <= 0 (it is {self.paranoid})"
            )
        return ""

    @property
    def kernel_allowed(self) -> bool:
        """Kernel-address requests can be armed: CPU-wide events, and the kernel accepts them."""
        return self.cpu_wide_allowed and not self.kernel_addresses_refused

    @property
    def kernel_reason(self) -> str:
        """Why kernel requests cannot be armed ("" when they can)."""
        return self.cpu_wide_reason or self.kernel_addresses_refused

    def notes(self) -> tuple[str, ...]:
        caps = [
            name
            for name, held in (
                ("CAP_PERFMON", self.cap_perfmon),
                ("CAP_SYS_ADMIN", self.cap_sys_admin),
            )
            if held
        ]
        exec_note = (
            "kernel exec breakpoints: allowed (kprobes present)"
            if self.kprobes
            else f"kernel exec breakpoints: refused, no kprobes ({self.kprobes_evidence})"
        )
        return (
            f"perf breakpoint events: {'available' if self.breakpoint_pmu else 'not available'}",
            f"perf_event_paranoid: {self.paranoid if self.paranoid is not None else 'absent'}",
            f"capabilities: {', '.join(caps) if caps else 'neither CAP_PERFMON nor CAP_SYS_ADMIN'}",
            f"kernel addresses: refused ({self.kernel_addresses_refused})"
            if self.kernel_addresses_refused
            else "kernel addresses: accepted",
            exec_note,
        )


def parse_cap_eff(status_text: str) -> int:
    """The effective capability mask from ``/proc/PID/status`` text (0 when absent)."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split(":", 1)[1].strip(), 16)
    return 0


def kprobes_from_config(config_text: str) -> bool | None:
    """True/False when the kernel config says, None when it does not mention CONFIG_KPROBES."""
    for line in config_text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_KPROBES="):
            return line.split("=", 1)[1] in ("y", "m")
        if line == "# CONFIG_KPROBES is not set":
            return False
    return None


def _read_config(root: Path, release: str) -> tuple[str, str] | None:
    proc = root / "proc/config.gz"
    try:
        return gzip.decompress(proc.read_bytes()).decode("utf-8", "replace"), "/proc/config.gz"
    except (OSError, EOFError, gzip.BadGzipFile):
        pass
    boot = root / "boot" / f"config-{release}"
    try:
        return boot.read_text("utf-8", "replace"), f"/boot/config-{release}"
    except OSError:
        return None


def _detect_kprobes(root: Path, release: str) -> tuple[bool, str]:
    config = _read_config(root, release)
    if config is not None:
        said = kprobes_from_config(config[0])
        if said is not None:
            state = "CONFIG_KPROBES=y" if said else "CONFIG_KPROBES is not set"
            return said, f"{state} in {config[1]}"
    for rel in _KPROBES_PATHS:
        if (root / rel).exists():
            return True, f"/{rel} exists"
    return False, "no kernel config says CONFIG_KPROBES and no kprobes files exist"


def _first_kernel_text(kallsyms: Path) -> int | None:
    """The first nonzero kernel text address in kallsyms (None when hidden or absent)."""
    try:
        with kallsyms.open() as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[1] in "Tt":
                    address = int(fields[0], 16)
                    if address:
                        return address
    except (OSError, ValueError):
        return None
    return None


def probe_kernel_addresses(kallsyms: Path = Path("/proc/kallsyms")) -> str | None:
    """ "" when the kernel accepts a breakpoint on a kernel address, else why it does not.

    The probe event is disabled and closed at once. The kernel reserves a slot
    before it checks permission, so ENOSPC says nothing. The first probe is bound to
    this thread: other tasks' breakpoints do not count against it (a task's slots
    are judged by the busiest task), only CPU-wide events do; then each CPU is
    asked. None means no probe could give a verdict.
    """
    # Imported here: the file facts above must stay readable without ctypes.
    from hwbkptd.arch.linux.perf_event import HW_BREAKPOINT_RW, breakpoint_attr, perf_event_open
    from hwbkptd.arch.perf.cpus import read_online

    address = _first_kernel_text(kallsyms)
    if address is None:
        return ""
    attr = breakpoint_attr(address, 8, HW_BREAKPOINT_RW, exclude_user=True, disabled=True)
    for pid, cpu in [(0, -1), *((-1, cpu) for cpu in sorted(read_online()))]:
        try:
            os.close(perf_event_open(attr, pid, cpu))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                continue
            if exc.errno in (errno.EPERM, errno.EACCES):
                name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                return (
                    f"this kernel refuses breakpoints on kernel addresses (perf_event_open:"
                    f" {name} for a kernel address, although user addresses are accepted):"
                    " kernel scope is unavailable on this machine"
                )
        return ""
    return None


def detect_caps(
    root: Path = Path("/"),
    release: str | None = None,
    probe: Callable[[], str | None] | None = None,
) -> PerfCaps:
    """Read the facts once. ``root`` lets tests point at a fixture tree.

    ``probe`` asks the kernel whether it accepts kernel addresses; by default it
    runs only against the real root (a fixture tree has no kernel to ask). No
    verdict (every slot taken) counts as accepted: an arming the kernel then
    refuses is reported as that request's refusal, with the kernel's errno.
    """
    if probe is None and root == Path("/"):
        probe = probe_kernel_addresses
    release = os.uname().release if release is None else release
    paranoid: int | None
    try:
        paranoid = int((root / "proc/sys/kernel/perf_event_paranoid").read_text().strip())
    except (OSError, ValueError):
        paranoid = None
    try:
        cap_eff = parse_cap_eff((root / "proc/self/status").read_text())
    except OSError:
        cap_eff = 0
    kprobes, evidence = _detect_kprobes(root, release)
    caps = PerfCaps(
        perf_events=paranoid is not None,
        breakpoint_pmu=(root / "sys/bus/event_source/devices/breakpoint").exists(),
        paranoid=paranoid,
        cap_perfmon=bool(cap_eff >> CAP_PERFMON & 1),
        cap_sys_admin=bool(cap_eff >> CAP_SYS_ADMIN & 1),
        kprobes=kprobes,
        kprobes_evidence=evidence,
    )
    if probe is not None and caps.cpu_wide_allowed:
        caps = dataclasses.replace(caps, kernel_addresses_refused=probe() or "")
    return caps


def check_kernel_request(address: int, access: Access, caps: PerfCaps) -> None:
    """Refuse a kernel request this machine cannot arm, before any system call.

    FailedPrecondition when the kernel lacks what it needs (perf breakpoints;
    kprobes for exec), PermissionDenied when perf would refuse the broker
    kernel events. ``address`` is already validated by the arch.
    """
    if not (caps.perf_events and caps.breakpoint_pmu):
        raise FailedPrecondition(caps.kernel_reason)
    if access is Access.EXEC and not caps.kprobes:
        raise FailedPrecondition(KERNEL_EXEC_REFUSED)
    if caps.kernel_addresses_refused:
        raise FailedPrecondition(caps.kernel_addresses_refused)
    if not caps.kernel_allowed:
        raise PermissionDenied(f"cannot watch kernel address {address:#x}: {caps.kernel_reason}")
