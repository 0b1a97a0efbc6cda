"""Machine layouts: the sim forms, their normalisation and errors, and the native layout."""

from __future__ import annotations

import platform

import pytest

from hwbkptd.arch.arm64 import Arm64
from hwbkptd.arch.layouts import Layout, native_layout, parse_layout
from hwbkptd.arch.x86_64 import X86_64
from hwbkptd.core.model import Access


@pytest.mark.parametrize(
    ("spec", "machine", "arch", "pools"),
    [
        ("sim", "sim", X86_64, {"dr": 4}),
        ("sim:arm64", "sim:arm64", Arm64, {"exec": 6, "data": 4}),
        ("sim:exec=2,data=3", "sim:exec=2,data=3", Arm64, {"exec": 2, "data": 3}),
        ("sim:exec=16,data=1", "sim:exec=16,data=1", Arm64, {"exec": 16, "data": 1}),
        ("sim:dr=1", "sim:dr=1", X86_64, {"dr": 1}),
        ("sim:dr=16", "sim:dr=16", X86_64, {"dr": 16}),
        # normalisation: case, spaces, order, leading zeros
        ("  SIM  ", "sim", X86_64, {"dr": 4}),
        ("Sim:ARM64", "sim:arm64", Arm64, {"exec": 6, "data": 4}),
        ("sim: data = 4 , exec=06", "sim:exec=6,data=4", Arm64, {"exec": 6, "data": 4}),
        ("sim:dr=04", "sim:dr=4", X86_64, {"dr": 4}),
    ],
)
def test_parse_layout(spec: str, machine: str, arch: type, pools: dict[str, int]) -> None:
    layout = parse_layout(spec)
    assert layout.machine == machine
    assert isinstance(layout.arch, arch)
    assert dict(layout.pools) == pools
    # Every pool the arch can ask for exists in the layout.
    assert {layout.arch.pool_for(a) for a in Access} == set(pools)
    # The normalised form parses to the same layout.
    again = parse_layout(layout.machine)
    assert (again.machine, type(again.arch), dict(again.pools)) == (machine, arch, pools)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("", "must start with 'sim'"),
        ("auto", "must start with 'sim'"),
        ("native", "must start with 'sim'"),
        ("simx", "must start with 'sim'"),
        ("sim:", "is not exec=N"),
        ("sim:x86_64", "is not exec=N"),
        ("sim:exec=4", "both exec=N and data=M"),
        ("sim:data=4", "both exec=N and data=M"),
        ("sim:dr=4,exec=2,data=2", "either dr=N alone"),
        ("sim:exec=0,data=4", "exec=0 is out of range 1..16"),
        ("sim:exec=4,data=17", "data=17 is out of range 1..16"),
        ("sim:dr=0", "dr=0 is out of range"),
        ("sim:dr=17", "dr=17 is out of range"),
        ("sim:dr=-1", "is not exec=N"),
        ("sim:exec=2,exec=3", "exec is given twice"),
        ("sim:exec=2,data=3,", "is not exec=N"),
        ("sim:exec=two,data=3", "is not exec=N"),
        ("sim:arm64,dr=2", "is not exec=N"),
    ],
)
def test_parse_layout_errors(spec: str, why: str) -> None:
    with pytest.raises(ValueError, match="accepted forms") as info:
        parse_layout(spec)
    message = str(info.value)
    assert why in message
    assert repr(spec) in message
    for form in ("sim ", "sim:arm64", "sim:dr=N", "sim:exec=N,data=M"):
        assert form in message


def test_layout_pools_are_read_only() -> None:
    layout = parse_layout("sim")
    with pytest.raises(TypeError):
        layout.pools["dr"] = 8  # type: ignore[index]
    with pytest.raises(AttributeError):
        layout.machine = "x"  # type: ignore[misc]


def test_layouts_compare_by_value() -> None:
    assert parse_layout("sim:dr=2") == Layout("sim:dr=2", X86_64(), {"dr": 2})
    assert parse_layout("sim: data=4,exec=6") == parse_layout("SIM:exec=6,data=4")
    assert parse_layout("sim:exec=6,data=4") != parse_layout("sim:arm64")  # names differ
    assert parse_layout("sim:dr=4").arch != parse_layout("sim:arm64").arch


@pytest.mark.parametrize("cpu", ["x86_64", "AMD64"])
def test_native_layout_x86(cpu: str) -> None:
    layout = native_layout(cpu=cpu)
    assert layout.machine == "native"
    assert isinstance(layout.arch, X86_64)
    assert dict(layout.pools) == {"dr": 4}


@pytest.mark.parametrize("cpu", ["aarch64", "arm64"])
def test_native_layout_arm64(cpu: str) -> None:
    layout = native_layout(cpu=cpu)
    assert isinstance(layout.arch, Arm64)
    assert dict(layout.pools) == {"exec": 6, "data": 4}
    layout = native_layout(exec_slots=16, data_slots=2, cpu=cpu)
    assert dict(layout.pools) == {"exec": 16, "data": 2}
    assert layout.machine == "native"


@pytest.mark.parametrize(("exec_slots", "data_slots"), [(0, 4), (6, 0), (17, 4), (6, 17)])
def test_native_layout_arm64_counts_checked(exec_slots: int, data_slots: int) -> None:
    with pytest.raises(ValueError, match=r"out of range 1\.\.16"):
        native_layout(exec_slots, data_slots, cpu="aarch64")


def test_native_layout_unknown_machine() -> None:
    with pytest.raises(ValueError, match=r"riscv64.*--machine sim"):
        native_layout(cpu="riscv64")


def test_native_layout_of_this_machine() -> None:
    if platform.machine() not in ("x86_64", "aarch64", "arm64", "AMD64"):
        pytest.skip(f"no native layout for {platform.machine()}")
    layout = native_layout()
    assert layout.machine == "native"
    assert layout.arch.name == ("x86_64" if platform.machine() in ("x86_64", "AMD64") else "arm64")
