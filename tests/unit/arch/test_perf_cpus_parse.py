"""CPU lists, CPU uevents and the monitor's bookkeeping, without sockets."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwbkptd.arch.perf.cpus import CpuEvent, CpuMonitor, parse_cpu_list, parse_uevent


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("0-1\n", {0, 1}),
        ("0\n", {0}),
        ("0-3,5,7-8", {0, 1, 2, 3, 5, 7, 8}),
        ("\n", set()),
        ("", set()),
    ],
)
def test_parse_cpu_list(text: str, cpus: set[int]) -> None:
    assert parse_cpu_list(text) == frozenset(cpus)


@pytest.mark.parametrize("bad", ["a", "3-1", "1-", "-1", "0,,x"])
def test_bad_cpu_lists(bad: str) -> None:
    with pytest.raises(ValueError, match="bad CPU"):
        parse_cpu_list(bad)


@given(st.sets(st.integers(0, 300)))
def test_cpu_lists_round_trip(cpus: set[int]) -> None:
    # Write the set the way the kernel does (ranges), read it back.
    parts: list[str] = []
    for cpu in sorted(cpus):
        if parts and "-" not in parts[-1].split(",")[-1] and int(parts[-1]) == cpu - 1:
            parts[-1] = f"{parts[-1]}-{cpu}"
        elif parts and "-" in parts[-1] and int(parts[-1].split("-")[1]) == cpu - 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{cpu}"
        else:
            parts.append(str(cpu))
    assert parse_cpu_list(",".join(parts) + "\n") == frozenset(cpus)


def uevent(action: str, devpath: str, subsystem: str = "cpu") -> bytes:
    return (
        f"{action}@{devpath}\0ACTION={action}\0DEVPATH={devpath}\0"
        f"SUBSYSTEM={subsystem}\0SEQNUM=821\0"
    ).encode()


def test_parse_uevent() -> None:
    assert parse_uevent(uevent("offline", "/devices/system/cpu/cpu1")) == CpuEvent("offline", 1)
    assert parse_uevent(uevent("online", "/devices/system/cpu/cpu12")) == CpuEvent("online", 12)
    # Other devices and actions are not CPU hotplug.
    assert parse_uevent(uevent("remove", "/devices/virtual/cpuid/cpu1", "cpuid")) is None
    assert parse_uevent(uevent("add", "/devices/system/cpu/cpu1")) is None
    assert parse_uevent(uevent("online", "/devices/system/memory/memory3", "memory")) is None
    assert parse_uevent(b"libudev\0garbage") is None
    assert parse_uevent(b"") is None


def test_monitor_calls_back_in_order_and_redoes_a_cpu_seen_online_twice(tmp_path: Path) -> None:
    online = tmp_path / "online"
    online.write_text("0-1\n")
    calls: list[tuple[str, int]] = []
    mon = CpuMonitor(
        lambda c: calls.append(("on", c)),
        lambda c: calls.append(("off", c)),
        online_path=online,
    )
    mon.handle(CpuEvent("online", 0))
    mon.handle(CpuEvent("online", 1))
    mon.handle(CpuEvent("offline", 1))
    mon.handle(CpuEvent("offline", 1))  # already gone: nothing to do
    mon.handle(CpuEvent("online", 1))
    mon.handle(CpuEvent("online", 1))  # seen online already: its events may be stale
    assert calls == [("on", 0), ("on", 1), ("off", 1), ("on", 1), ("off", 1), ("on", 1)]
    assert mon.online == {0, 1}
    calls.clear()
    online.write_text("0\n")
    mon.resync()  # after lost uevents: 1 went away, 0 may have flapped
    assert calls == [("off", 1), ("off", 0), ("on", 0)]
    assert mon.online == {0}


def test_a_failing_callback_does_not_stop_the_monitor(tmp_path: Path) -> None:
    online = tmp_path / "online"
    online.write_text("0\n")
    seen: list[int] = []

    def boom(cpu: int) -> None:
        seen.append(cpu)
        raise RuntimeError("boom")

    mon = CpuMonitor(boom, boom, online_path=online)
    mon.handle(CpuEvent("online", 0))
    mon.handle(CpuEvent("offline", 0))
    assert seen == [0, 0]
    assert mon.online == frozenset()
