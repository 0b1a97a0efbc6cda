"""Choosing the machine the broker drives: a simulated layout or the native mechanisms.

``build_machine`` turns ``--machine`` and ``--arming`` into the arch, the pool
layout, the mechanism and the machine hooks, and says in one sentence why it
chose what it chose (the daemon prints that at start). ``auto`` picks the
native machine when it can trace threads here (root on x86_64 Linux, ptrace
usable with the asked arming), else the simulated one.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from hwbkptd.arch.layouts import ACCEPTED_FORMS, native_layout, parse_layout
from hwbkptd.arch.sim import SimMechanism
from hwbkptd.core.arch_port import Arch
from hwbkptd.core.errors import BrokerError
from hwbkptd.core.machine_hooks import MachineHooks, SimHooks
from hwbkptd.core.mechanism import Mechanism, MechanismInfo

__all__ = [
    "ARMINGS",
    "Machine",
    "MachineError",
    "build_machine",
    "native_blocker",
]

ARMINGS = ("auto", "perf", "debugreg")


class MachineError(ValueError):
    """``--machine`` or ``--arming`` cannot be honoured; the message says what to use instead."""


@dataclass(frozen=True)
class Machine:
    #: The normalised machine: "sim", "sim:arm64", "sim:exec=2,data=2", "native".
    machine: str
    arch: Arch
    pools: Mapping[str, int]
    mechanism: Mechanism
    #: Why this machine was chosen, for the start-up line and ``info``.
    reason: str
    #: The arming the operator asked for (auto, perf, debugreg); native mechanisms honour it.
    arming: str = "auto"
    #: The simulated machine, when it is one: the sim service drives it.
    sim: SimMechanism | None = None
    #: Mechanisms that exist in principle but cannot be used here, with the reason.
    unavailable: tuple[MechanismInfo, ...] = ()
    #: What the broker asks of the machine beyond slots (symbols, checks, attaching).
    hooks: MachineHooks | None = None


def native_blocker() -> str:
    """Why the native machine cannot run here at all ("" when it may)."""
    if sys.platform != "linux":
        return f"native mechanisms need Linux, not {sys.platform}"
    machine = platform.machine()
    if machine != "x86_64":
        return f"native mechanisms are built for x86_64 only, not {machine}"
    return ""


def _privilege_blocker() -> str:
    """Tracing other users' processes takes root (or CAP_SYS_PTRACE)."""
    if os.geteuid() == 0:
        return ""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                # CAP_SYS_PTRACE is bit 19.
                if line.startswith("CapEff:") and int(line.split(":", 1)[1], 16) >> 19 & 1:
                    return ""
    except OSError:
        pass
    return f"not root (uid {os.geteuid()}) and no CAP_SYS_PTRACE"


def _unavailable(reason: str) -> tuple[MechanismInfo, ...]:
    return (
        MechanismInfo("ptrace", available=False, reason=reason),
        MechanismInfo("perf-kernel", available=False, reason=reason),
    )


def _sim(spec: str, arming: str, reason: str, why_not_native: str) -> Machine:
    try:
        layout = parse_layout(spec)
    except ValueError as err:
        raise MachineError(str(err)) from None
    sim = SimMechanism(layout.arch, layout.pools)
    return Machine(
        machine=layout.machine,
        arch=layout.arch,
        pools=layout.pools,
        mechanism=sim,
        reason=reason,
        arming=arming,
        sim=sim,
        unavailable=_unavailable(why_not_native or "not selected (--machine sim)"),
        hooks=SimHooks(),
    )


def _native(
    arming: str, reason: str, *, require_ptrace: bool, notify: str = "auto"
) -> Machine | str:
    """The native machine, or (with ``require_ptrace``) why its ptrace side cannot work."""
    # Imported here: the sim must start on machines where the native modules cannot load.
    from hwbkptd.arch.native import NativeMechanism
    from hwbkptd.daemon.native_hooks import NativeHooks

    try:
        layout = native_layout()
        mechanism = NativeMechanism(arming=arming, notify=notify)
    except (ValueError, BrokerError) as err:
        raise MachineError(f"--machine native: {err}") from None
    parts = {part.name: part for part in mechanism.mechanisms()}
    ptrace = parts["ptrace"]
    if require_ptrace and (mechanism.ptrace is None or not ptrace.available):
        return f"ptrace: {ptrace.reason}"
    kernel = parts.get("perf-kernel")
    said = [
        f"ptrace with {ptrace.arming} arming" if ptrace.available else f"no ptrace: {ptrace.reason}"
    ]
    if kernel is not None:
        said.append("perf-kernel" if kernel.available else f"no perf-kernel: {kernel.reason}")
    return Machine(
        machine="native",
        arch=layout.arch,
        pools=layout.pools,
        mechanism=mechanism,
        reason=f"{reason}; {', '.join(said)}",
        arming=ptrace.arming or arming,
        hooks=NativeHooks(mechanism),
    )


def build_machine(spec: str, arming: str = "auto", notify: str = "auto") -> Machine:
    """The machine for ``--machine SPEC`` (auto, native, sim, sim:LAYOUT).

    Build it before starting threads: the ptrace mechanism blocks SIGCHLD in the
    calling thread, and threads started later inherit that.
    """
    if arming not in ARMINGS:
        raise MachineError(f"unknown arming {arming!r}: use one of {', '.join(ARMINGS)}")
    text = spec.strip().lower()
    if text == "auto":
        why = native_blocker() or _privilege_blocker()
        if not why:
            built = _native(
                arming, "auto: native mechanisms available", require_ptrace=True, notify=notify
            )
            if isinstance(built, Machine):
                return built
            why = built
        return _sim("sim", arming, f"auto: native machine not available ({why}); simulated", why)
    if text == "native":
        why = native_blocker()
        if why:
            raise MachineError(f"--machine native: {why}; use --machine sim or --machine auto")
        built = _native(arming, "--machine native", require_ptrace=False, notify=notify)
        assert isinstance(built, Machine)
        return built
    if text == "sim" or text.startswith("sim:"):
        return _sim(text, arming, f"--machine {spec.strip()}", "")
    forms = "; ".join(("auto", "native", *ACCEPTED_FORMS))
    raise MachineError(f"unknown machine {spec!r}: accepted forms: {forms}")
