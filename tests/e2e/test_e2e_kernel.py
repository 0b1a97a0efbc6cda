"""Issue 2, item 5: a kernel request is all or nothing across traced threads."""

from __future__ import annotations

import pytest
from e2e_support import Daemon

import hwbkpt

pytestmark = pytest.mark.e2e

KERNEL_ADDR = 0xFFFFFFFF82000000
DATA = 0x601000


def test_kernel_request_waits_for_the_crowded_thread(daemon: Daemon, client: hwbkpt.Client) -> None:
    pid, (free_tid, crowded_tid) = daemon.spawn(threads=2)
    crowd = client.open_session("crowd")
    for i in range(4):
        crowd.watch(DATA + 8 * i, tid=crowded_tid, priority="high")

    k = daemon.watch("--kernel", hex(KERNEL_ADDR), "--name", "K")
    first = k.seen[0]
    assert first["state"] == "pending", first
    assert first["installed_tids"] == []
    k_id = first["breakpoint"]

    # Pending everywhere: not on the CPU context and not in the thread where it would fit.
    smap = client.slot_map()
    holders = {(t.tid, h.session_name) for t in smap.threads for s in t.slots for h in s.holders}
    assert "K" not in {name for _, name in holders}, holders
    assert any(bp.id == k_id for bp in smap.waiting)
    # A touch of the kernel address from the free thread reaches nobody.
    assert client.sim_touch(pid, KERNEL_ADDR, tid=free_tid, value=1).breakpoint_ids == ()

    # The crowded thread ends: the kernel request is installed everywhere.
    client.sim_end_thread(crowded_tid)
    state = k.expect(event="state", state="installed")
    assert state["breakpoint"] == k_id
    smap = client.slot_map()
    cpu = [t for t in smap.threads if t.tid == 0]
    assert cpu, smap
    assert any(h.session_name == "K" for s in cpu[0].slots for h in s.holders)
    assert client.sim_touch(pid, KERNEL_ADDR, tid=free_tid, value=2).breakpoint_ids == (k_id,)
    hit = k.expect(event="hit")
    assert (hit["tid"], hit["value"]) == (free_tid, 2)
    assert k.interrupt() == 130
    crowd.close()


def test_kernel_request_fits_when_threads_leave_room(daemon: Daemon, client: hwbkpt.Client) -> None:
    pid, _ = daemon.spawn(threads=2)
    with client.open_session("light") as light:
        light.watch(DATA, pid=pid)
        k = daemon.watch("--kernel", hex(KERNEL_ADDR + 8), "--name", "K2")
        assert k.seen[0]["state"] == "installed"
        assert k.interrupt() == 130
