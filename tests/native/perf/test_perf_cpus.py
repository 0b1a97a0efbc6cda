"""CPU hotplug followed through real kernel uevents."""

from __future__ import annotations

import asyncio

import pytest
from perf_support import set_cpu_online

from hwbkptd.arch.perf.cpus import CpuMonitor, read_online

pytestmark = pytest.mark.native


async def test_offline_and_online_are_called_back_in_order(cpu1_hotplug: None) -> None:
    calls: list[tuple[str, int]] = []
    monitor = CpuMonitor(
        lambda cpu: calls.append(("online", cpu)), lambda cpu: calls.append(("offline", cpu))
    )
    monitor.start(asyncio.get_running_loop())
    try:
        assert monitor.following, monitor.reason
        assert monitor.online == read_online()
        assert 1 in monitor.online
        set_cpu_online(False)
        async with asyncio.timeout(5):
            assert await monitor.wait_synced()
        assert 1 not in monitor.online
        set_cpu_online(True)
        async with asyncio.timeout(5):
            assert await monitor.wait_synced()
        assert 1 in monitor.online
        assert calls == [("offline", 1), ("online", 1)]
    finally:
        monitor.close()
    assert not monitor.following
