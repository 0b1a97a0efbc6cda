"""Choosing the machine the broker drives: a simulated layout or the native mechanisms.

``build_machine`` turns ``--machine`` and ``--arming`` into the arch, the pool
layout and the mechanism, and says in one sentence why it chose what it chose
(the daemon prints that at start).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hwbkptd.arch.base import Arch
from hwbkptd.arch.layouts import ACCEPTED_FORMS, parse_layout
from hwbkptd.arch.sim import SimMechanism
from hwbkptd.core.mechanism import Mechanism, MechanismInfo

__all__ = ["ARMINGS", "NATIVE_UNAVAILABLE", "Machine", "MachineError", "build_machine"]

ARMINGS = ("auto", "perf", "debugreg")

#: Why ``auto`` cannot pick the native machine yet (the ptrace helper replaces this probe).
NATIVE_UNAVAILABLE = "native mechanisms not built yet"


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


def _native_unavailable() -> tuple[MechanismInfo, ...]:
    return (
        MechanismInfo("ptrace", available=False, reason=NATIVE_UNAVAILABLE),
        MechanismInfo("perf", available=False, reason=NATIVE_UNAVAILABLE),
    )


def _sim(spec: str, arming: str, reason: str) -> Machine:
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
        unavailable=_native_unavailable(),
    )


def build_machine(spec: str, arming: str = "auto") -> Machine:
    """The machine for ``--machine SPEC`` (auto, native, sim, sim:LAYOUT)."""
    if arming not in ARMINGS:
        raise MachineError(f"unknown arming {arming!r}: use one of {', '.join(ARMINGS)}")
    text = spec.strip().lower()
    if text == "auto":
        return _sim("sim", arming, f"auto: native mechanisms not available: {NATIVE_UNAVAILABLE}")
    if text == "native":
        raise MachineError(
            f"--machine native: {NATIVE_UNAVAILABLE}; use --machine sim or --machine auto"
        )
    if text == "sim" or text.startswith("sim:"):
        return _sim(text, arming, f"--machine {spec.strip()}")
    forms = "; ".join(("auto", "native", *ACCEPTED_FORMS))
    raise MachineError(f"unknown machine {spec!r}: accepted forms: {forms}")
