"""Issue 2, item 4: on ``sim:arm64`` exec and data requests compete only inside their pool."""

from __future__ import annotations

import pytest
from e2e_support import Daemon, expect_event, quiet_events

import hwbkpt

pytestmark = pytest.mark.e2e
HWBKPTD_OPTIONS = {"machine": "sim:arm64"}

CODE = 0x400000
DATA = 0x601000


def test_describe_shows_two_pools(daemon: Daemon) -> None:
    (info,) = daemon.cli_json("info")
    assert (info["machine"], info["arch"]) == ("sim:arm64", "arm64")
    assert {p["name"]: p["slots"] for p in info["pools"]} == {"exec": 6, "data": 4}


def test_pools_are_separate(daemon: Daemon, client: hwbkpt.Client) -> None:
    pid, _ = daemon.spawn()
    a = client.open_session("A")
    data = [a.watch(DATA + 8 * i, pid=pid) for i in range(4)]
    code = [a.watch(CODE + 4 * i, pid=pid, access="exec") for i in range(6)]
    assert all(bp.state is hwbkpt.BreakpointState.INSTALLED for bp in data + code)
    assert {c.pool for bp in data for c in bp.chunks} == {"data"}
    assert {(c.pool, c.length) for bp in code for c in bp.chunks} == {("exec", 4)}

    # A strong exec request displaces exactly one exec request, never a data one.
    b = daemon.watch("--pid", str(pid), hex(CODE + 0x100), "--access", "exec",
                     "--priority", "high", "--name", "B")  # fmt: skip
    assert b.seen[0]["state"] == "installed"
    ev = expect_event(a, "displaced")
    assert ev.breakpoint_id == code[-1].id
    later = quiet_events(a)
    assert [e for e in later if e.kind == "displaced"] == []

    # A strong data request displaces exactly one data request.
    c = daemon.watch("--pid", str(pid), hex(DATA + 0x100), "--priority", "high", "--name", "C")
    assert c.seen[0]["state"] == "installed"
    ev = expect_event(a, "displaced")
    assert ev.breakpoint_id == data[-1].id
    assert [e for e in quiet_events(a) if e.kind == "displaced"] == []

    states = {bp.id: bp.state for bp in a.list()}
    pending = {i for i, s in states.items() if s is hwbkpt.BreakpointState.PENDING}
    assert pending == {code[-1].id, data[-1].id}

    (thread,) = client.slot_map(pid).threads
    by_pool: dict[str, int] = {}
    for slot in thread.slots:
        if slot.holders:
            by_pool[slot.pool] = by_pool.get(slot.pool, 0) + 1
    assert by_pool == {"exec": 6, "data": 4}
    for w in (b, c):
        assert w.interrupt() == 130
    assert {
        e.breakpoint_id for e in (expect_event(a, "restored"), expect_event(a, "restored"))
    } == {
        code[-1].id,
        data[-1].id,
    }
    a.close()


def test_exec_hit_goes_to_the_exec_request(daemon: Daemon, client: hwbkpt.Client) -> None:
    pid, _ = daemon.spawn()
    with client.open_session("X") as x:
        bp = x.watch(CODE, pid=pid, access="exec")
        d = x.watch(CODE, pid=pid)  # a data watch on the same bytes: another pool, another slot
        touch = client.sim_touch(pid, CODE, access="exec")
        assert touch.breakpoint_ids == (bp.id,)
        hit = expect_event(x, "hit")
        assert hit.breakpoint_id == bp.id
        assert isinstance(hit.payload, hwbkpt.Hit)
        assert hit.payload.access is hwbkpt.Access.EXEC
        assert client.sim_touch(pid, CODE, value=1, size=4).breakpoint_ids == (d.id,)
