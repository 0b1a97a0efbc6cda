"""Capability detection on fixture trees, and the up-front kernel request check."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import pytest

from hwbkptd.arch.perf.caps import (
    KERNEL_EXEC_REFUSED,
    PerfCaps,
    check_kernel_request,
    detect_caps,
    kprobes_from_config,
    parse_cap_eff,
    probe_kernel_addresses,
)
from hwbkptd.core.errors import FailedPrecondition, PermissionDenied
from hwbkptd.core.model import Access

ROOT_CAPS = "000001fffeffffff"  # what root has here: bits 21 and 38 among others
KERNEL = 0xFFFFFFFF83000000


def tree(
    tmp: Path,
    *,
    paranoid: str | None = "2",
    cap_eff: str = ROOT_CAPS,
    pmu: bool = True,
    proc_config: str | None = None,
    boot_config: str | None = None,
    kprobes_file: str | None = None,
) -> Path:
    (tmp / "proc/self").mkdir(parents=True)
    (tmp / "proc/self/status").write_text(f"Name:\tx\nCapInh:\t0\nCapEff:\t{cap_eff}\n")
    if paranoid is not None:
        (tmp / "proc/sys/kernel").mkdir(parents=True)
        (tmp / "proc/sys/kernel/perf_event_paranoid").write_text(paranoid + "\n")
    if pmu:
        (tmp / "sys/bus/event_source/devices/breakpoint").mkdir(parents=True)
    if proc_config is not None:
        (tmp / "proc/config.gz").write_bytes(gzip.compress(proc_config.encode()))
    if boot_config is not None:
        (tmp / "boot").mkdir()
        (tmp / "boot/config-6.18.0").write_text(boot_config)
    if kprobes_file is not None:
        (tmp / kprobes_file).parent.mkdir(parents=True, exist_ok=True)
        (tmp / kprobes_file).write_text("")
    return tmp


def test_this_machines_facts(tmp_path: Path) -> None:
    caps = detect_caps(
        tree(tmp_path, proc_config="CONFIG_PERF_EVENTS=y\n# CONFIG_KPROBES is not set\n"),
        release="6.18.0",
    )
    assert caps.breakpoint_pmu
    assert caps.perf_events
    assert caps.paranoid == 2
    assert caps.cap_perfmon
    assert caps.cap_sys_admin
    assert caps.kernel_allowed
    assert not caps.kprobes
    assert caps.kprobes_evidence == "CONFIG_KPROBES is not set in /proc/config.gz"
    assert "kernel exec breakpoints: refused" in " ".join(caps.notes())
    assert caps.kernel_reason == ""


def test_kprobes_from_boot_config_or_files(tmp_path: Path) -> None:
    a = detect_caps(tree(tmp_path / "a", boot_config="CONFIG_KPROBES=y\n"), release="6.18.0")
    assert a.kprobes
    assert a.kprobes_evidence == "CONFIG_KPROBES=y in /boot/config-6.18.0"
    b = detect_caps(
        tree(tmp_path / "b", kprobes_file="sys/kernel/debug/kprobes/list"), release="6.18.0"
    )
    assert b.kprobes
    assert "/sys/kernel/debug/kprobes" in b.kprobes_evidence
    c = detect_caps(tree(tmp_path / "c"), release="6.18.0")
    assert not c.kprobes
    assert "no kprobes files" in c.kprobes_evidence
    # A config that says nothing about kprobes defers to the files.
    d = detect_caps(
        tree(
            tmp_path / "d",
            proc_config="CONFIG_X=y\n",
            kprobes_file="proc/sys/debug/kprobes-optimization",
        ),
        release="6.18.0",
    )
    assert d.kprobes


def test_permissions(tmp_path: Path) -> None:
    user = detect_caps(tree(tmp_path / "u", cap_eff="0"), release="x")
    assert not user.kernel_allowed
    assert "CAP_PERFMON" in user.kernel_reason
    relaxed = detect_caps(tree(tmp_path / "r", cap_eff="0", paranoid="-1"), release="x")
    assert relaxed.kernel_allowed
    perfmon_only = detect_caps(tree(tmp_path / "p", cap_eff=f"{1 << 38:x}"), release="x")
    assert perfmon_only.cap_perfmon
    assert not perfmon_only.cap_sys_admin
    assert perfmon_only.kernel_allowed
    no_perf = detect_caps(tree(tmp_path / "n", paranoid=None, pmu=False), release="x")
    assert not no_perf.kernel_allowed
    assert "no perf events" in no_perf.kernel_reason


def test_parsers() -> None:
    assert parse_cap_eff("CapPrm:\t1\nCapEff:\t0000000000200000\n") == 1 << 21
    assert parse_cap_eff("Name: x\n") == 0
    assert kprobes_from_config("# CONFIG_KPROBES is not set\n") is False
    assert kprobes_from_config("CONFIG_KPROBES=y\n") is True
    assert kprobes_from_config("CONFIG_KPROBES_ON_FTRACE=y\nCONFIG_HAVE_KPROBES=y\n") is None


CAPS = PerfCaps(
    perf_events=True,
    breakpoint_pmu=True,
    paranoid=2,
    cap_perfmon=True,
    cap_sys_admin=True,
    kprobes=False,
    kprobes_evidence="CONFIG_KPROBES is not set in /proc/config.gz",
)


def test_check_kernel_request() -> None:
    for access in (Access.WRITE, Access.READ, Access.READ_WRITE):
        check_kernel_request(KERNEL, access, CAPS)
    with pytest.raises(FailedPrecondition) as err:
        check_kernel_request(KERNEL, Access.EXEC, CAPS)
    assert err.value.message == KERNEL_EXEC_REFUSED
    check_kernel_request(KERNEL, Access.EXEC, dataclasses.replace(CAPS, kprobes=True))
    unprivileged = dataclasses.replace(CAPS, cap_perfmon=False, cap_sys_admin=False)
    with pytest.raises(PermissionDenied, match="CAP_PERFMON"):
        check_kernel_request(KERNEL, Access.WRITE, unprivileged)
    with pytest.raises(FailedPrecondition, match="breakpoint"):
        check_kernel_request(KERNEL, Access.WRITE, dataclasses.replace(CAPS, breakpoint_pmu=False))


def test_a_kernel_that_refuses_kernel_addresses_refuses_kernel_requests_up_front(
    tmp_path: Path,
) -> None:
    why = "this kernel refuses breakpoints on kernel addresses (perf_event_open: EPERM)"
    caps = detect_caps(tree(tmp_path), release="x", probe=lambda: why)
    assert caps.cpu_wide_allowed  # user-address CPU-wide rings (non-stop) still work
    assert not caps.kernel_allowed
    assert caps.kernel_reason == why
    assert f"kernel addresses: refused ({why})" in caps.notes()
    with pytest.raises(FailedPrecondition, match="refuses breakpoints on kernel addresses"):
        check_kernel_request(KERNEL, Access.READ_WRITE, caps)
    accepted = detect_caps(tree(tmp_path / "ok"), release="x", probe=lambda: "")
    assert accepted.kernel_allowed
    check_kernel_request(KERNEL, Access.READ_WRITE, accepted)


def test_the_probe_is_not_asked_without_cpu_wide_rights(tmp_path: Path) -> None:
    asked: list[bool] = []

    def probe() -> str:
        asked.append(True)
        return "refused"

    user = detect_caps(tree(tmp_path, cap_eff="0"), release="x", probe=probe)
    assert asked == []
    assert "CAP_PERFMON" in user.kernel_reason


def test_the_probe_reads_the_first_kernel_text_address(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.write_text("0000000000000000 T _text\n")
    assert probe_kernel_addresses(hidden) == ""  # nothing to ask about: accepted
    assert probe_kernel_addresses(tmp_path / "absent") == ""
