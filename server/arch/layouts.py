"""Machine layouts: which arch rules apply and how many slots each pool has.

``parse_layout`` reads the ``--machine sim[:LAYOUT]`` forms; ``native_layout``
describes the machine the broker runs on.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from hwbkptd.arch.arm64 import DATA_POOL, EXEC_POOL, Arm64
from hwbkptd.arch.x86_64 import POOL as DR_POOL
from hwbkptd.arch.x86_64 import X86_64
from hwbkptd.core.arch_port import Arch

__all__ = ["ACCEPTED_FORMS", "MAX_POOL_SLOTS", "Layout", "native_layout", "parse_layout"]

#: Architectural ceiling: arm64 has at most 16 breakpoint and 16 watchpoint pairs.
MAX_POOL_SLOTS = 16

ACCEPTED_FORMS = (
    "sim (x86_64, dr=4)",
    "sim:arm64 (exec=6, data=4)",
    "sim:dr=N (x86_64 rules)",
    "sim:exec=N,data=M (arm64 rules)",
)

_ITEM = re.compile(r"(exec|data|dr)=([0-9]+)")
_X86_MACHINES = frozenset({"x86_64", "amd64"})
_ARM64_MACHINES = frozenset({"aarch64", "arm64"})


@dataclass(frozen=True)
class Layout:
    #: The normalised spec ("sim", "sim:arm64", "sim:exec=6,data=4", "sim:dr=2") or "native".
    machine: str
    arch: Arch
    pools: Mapping[str, int]


def _layout(machine: str, arch: Arch, pools: dict[str, int]) -> Layout:
    # A read-only view: layouts are shared by the broker and the mechanisms.
    return Layout(machine, arch, MappingProxyType(pools))


def _error(spec: str, why: str) -> ValueError:
    forms = "; ".join(ACCEPTED_FORMS)
    return ValueError(f"bad machine layout {spec!r}: {why}; accepted forms: {forms}")


def parse_layout(spec: str) -> Layout:
    """Parse a simulated machine layout; raises ValueError listing the accepted forms.

    Case and spaces around items are ignored, exec and data may come in either
    order; the returned ``machine`` is the normalised form.
    """
    text = spec.strip().lower()
    if text == "sim":
        return _layout("sim", X86_64(), {DR_POOL: 4})
    head, colon, rest = text.partition(":")
    if head.strip() != "sim" or not colon:
        raise _error(spec, "it must start with 'sim'")
    rest = rest.strip()
    if rest == "arm64":
        return _layout("sim:arm64", Arm64(), {EXEC_POOL: 6, DATA_POOL: 4})
    counts: dict[str, int] = {}
    for raw in rest.split(","):
        item = re.fullmatch(_ITEM, raw.replace(" ", ""))
        if item is None:
            raise _error(spec, f"{raw.strip()!r} is not exec=N, data=M or dr=N")
        key, value = item.group(1), int(item.group(2))
        if key in counts:
            raise _error(spec, f"{key} is given twice")
        if not 1 <= value <= MAX_POOL_SLOTS:
            raise _error(spec, f"{key}={value} is out of range 1..{MAX_POOL_SLOTS}")
        counts[key] = value
    if set(counts) == {DR_POOL}:
        n = counts[DR_POOL]
        return _layout(f"sim:dr={n}", X86_64(), {DR_POOL: n})
    if set(counts) == {EXEC_POOL, DATA_POOL}:
        n, m = counts[EXEC_POOL], counts[DATA_POOL]
        return _layout(f"sim:exec={n},data={m}", Arm64(), {EXEC_POOL: n, DATA_POOL: m})
    raise _error(spec, "give either dr=N alone or both exec=N and data=M")


def native_layout(exec_slots: int = 6, data_slots: int = 4, *, cpu: str | None = None) -> Layout:
    """The layout of the machine the broker runs on.

    x86_64 always has four DRs. arm64 slot counts live in ID_AA64DFR0_EL1, which
    user space reads through ptrace (NT_ARM_HW_BREAK/HW_WATCH), so the caller
    passes them in. ``cpu`` overrides ``platform.machine()`` (for tests).
    """
    name = (cpu if cpu is not None else platform.machine()).lower()
    if name in _X86_MACHINES:
        return _layout("native", X86_64(), {DR_POOL: 4})
    if name in _ARM64_MACHINES:
        for label, count in (("exec_slots", exec_slots), ("data_slots", data_slots)):
            if not 1 <= count <= MAX_POOL_SLOTS:
                raise ValueError(f"{label}={count} is out of range 1..{MAX_POOL_SLOTS}")
        return _layout("native", Arm64(), {EXEC_POOL: exec_slots, DATA_POOL: data_slots})
    raise ValueError(f"no debug register support for machine {name!r}; use --machine sim")
