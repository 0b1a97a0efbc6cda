"""hwbkptd.machines: which machine --machine and --arming give, and why."""

from __future__ import annotations

import pytest

from hwbkptd.arch.sim import SimMechanism
from hwbkptd.machines import NATIVE_UNAVAILABLE, MachineError, build_machine


@pytest.mark.parametrize(
    ("spec", "machine", "arch", "pools"),
    [
        ("sim", "sim", "x86_64", {"dr": 4}),
        (" SIM ", "sim", "x86_64", {"dr": 4}),
        ("sim:arm64", "sim:arm64", "arm64", {"exec": 6, "data": 4}),
        ("sim:data=2,exec=3", "sim:exec=3,data=2", "arm64", {"exec": 3, "data": 2}),
        ("sim:dr=2", "sim:dr=2", "x86_64", {"dr": 2}),
    ],
)
def test_sim_layouts(spec: str, machine: str, arch: str, pools: dict[str, int]) -> None:
    built = build_machine(spec, "auto")
    assert built.machine == machine
    assert built.arch.name == arch
    assert dict(built.pools) == pools
    assert isinstance(built.mechanism, SimMechanism)
    assert built.sim is built.mechanism
    assert built.reason == f"--machine {spec.strip()}"


def test_auto_falls_back_to_sim_and_says_why() -> None:
    built = build_machine("auto", "perf")
    assert built.machine == "sim"
    assert built.reason == f"auto: native mechanisms not available: {NATIVE_UNAVAILABLE}"
    assert built.arming == "perf"
    assert {m.name for m in built.unavailable} == {"ptrace", "perf"}
    assert all(not m.available and m.reason for m in built.unavailable)


def test_each_build_has_its_own_sim() -> None:
    assert build_machine("sim").sim is not build_machine("sim").sim


@pytest.mark.parametrize(
    ("spec", "arming", "message"),
    [
        ("native", "auto", "native mechanisms not built yet"),
        ("sim:dr=0", "auto", "out of range"),
        ("sim:quantum", "auto", "accepted forms"),
        ("vax", "auto", "accepted forms"),
        ("sim", "magic", "unknown arming"),
    ],
)
def test_refused(spec: str, arming: str, message: str) -> None:
    with pytest.raises(MachineError, match=message):
        build_machine(spec, arming)
