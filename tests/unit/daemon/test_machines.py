"""hwbkptd.daemon.machines: which machine --machine and --arming give, and why."""

from __future__ import annotations

import os
import platform

import pytest
from native_support import require_native

from hwbkptd.arch.sim import SimMechanism
from hwbkptd.core.machine_hooks import SimHooks
from hwbkptd.daemon import machines
from hwbkptd.daemon.machines import MachineError, build_machine


def _need_native() -> None:
    if platform.system() != "Linux" or platform.machine() != "x86_64" or os.geteuid() != 0:
        require_native("the native machine needs root on Linux x86_64")


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
    assert isinstance(built.hooks, SimHooks)
    assert built.reason == f"--machine {spec.strip()}"
    assert {m.name for m in built.unavailable} == {"ptrace", "perf-kernel"}


def test_auto_falls_back_to_sim_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machines, "_privilege_blocker", lambda: "not root (uid 1000)")
    built = build_machine("auto", "perf")
    assert built.machine == "sim"
    assert built.reason == "auto: native machine not available (not root (uid 1000)); simulated"
    assert built.arming == "perf"
    assert {m.name for m in built.unavailable} == {"ptrace", "perf-kernel"}
    assert all(not m.available and "uid 1000" in m.reason for m in built.unavailable)


def test_native_refused_on_other_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machines.platform, "machine", lambda: "riscv64")
    with pytest.raises(MachineError, match="x86_64 only, not riscv64"):
        build_machine("native")
    built = build_machine("auto")
    assert built.machine == "sim"
    assert "x86_64 only" in built.reason


@pytest.mark.native
@pytest.mark.parametrize("arming", ["perf", "debugreg"])
def test_native_machine(arming: str) -> None:
    _need_native()
    for spec in ("native", "auto"):
        built = build_machine(spec, arming)
        assert built.machine == "native"
        assert built.arch.name == "x86_64"
        assert dict(built.pools) == {"dr": 4}
        assert built.arming == arming
        assert built.sim is None
        assert built.hooks is not None
        assert built.hooks.attaches
        assert f"ptrace with {arming} arming" in built.reason
        names = [m.name for m in built.hooks.mechanisms()]
        # --notify auto (the default): the BPF arming where its probe program loads here.
        from hwbkptd.arch.bpf.pipe import probe_bpf

        assert names == ["ptrace", "perf-kernel", "bpf" if probe_bpf()[0] else "perf-nonstop"]
        forced = build_machine(spec, arming, "ptrace")
        assert forced.hooks is not None
        assert [m.name for m in forced.hooks.mechanisms()] == [
            "ptrace",
            "perf-kernel",
            "perf-nonstop",
        ]


def test_each_build_has_its_own_sim() -> None:
    assert build_machine("sim").sim is not build_machine("sim").sim


@pytest.mark.parametrize(
    ("spec", "arming", "message"),
    [
        ("sim:dr=0", "auto", "out of range"),
        ("sim:quantum", "auto", "accepted forms"),
        ("vax", "auto", "accepted forms"),
        ("sim", "magic", "unknown arming"),
    ],
)
def test_refused(spec: str, arming: str, message: str) -> None:
    with pytest.raises(MachineError, match=message):
        build_machine(spec, arming)
