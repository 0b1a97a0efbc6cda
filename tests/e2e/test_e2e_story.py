"""Issue 2, items 2 and 3 on ``sim`` (one pool of 4): displacement, restore, shared slots.

Client A is this test process using the library; client B is a separate
``hwbkpt --json watch`` process. Accesses come from the sim service.
"""

from __future__ import annotations

import pytest
from e2e_support import Daemon, expect_event, quiet_events

import hwbkpt

pytestmark = pytest.mark.e2e

BASE = 0x601000


def test_stronger_client_displaces_one_and_restores_it(
    daemon: Daemon, client: hwbkpt.Client
) -> None:
    pid, _ = daemon.spawn()
    a = client.open_session("A")
    bps = [a.watch(BASE + 8 * i, pid=pid) for i in range(4)]
    assert [bp.state for bp in bps] == [hwbkpt.BreakpointState.INSTALLED] * 4
    weakest = bps[-1]  # equal priority: the newest ranks last

    b = daemon.watch("--pid", str(pid), hex(BASE + 32), "--priority", "high", "--name", "B")
    assert b.seen[0]["state"] == "installed"

    seen: list[hwbkpt.Event] = []
    displaced = expect_event(a, "displaced", seen=seen)
    assert displaced.breakpoint_id == weakest.id
    assert isinstance(displaced.payload, hwbkpt.Displaced)
    assert (displaced.payload.by_session, displaced.payload.by_priority) == ("B", 75)
    assert displaced.payload.tids == (pid,)
    seen += quiet_events(a)
    assert [e.kind for e in seen].count("displaced") == 1, seen

    # A touch of A's displaced address: nobody holds it, A gets nothing.
    touch = daemon.cli_json("sim", "touch", "--pid", str(pid), hex(weakest.spec.address),
                            "--value", "7")[0]  # fmt: skip
    assert touch["breakpoint_ids"] == []
    assert [e for e in quiet_events(a) if e.kind == "hit"] == []

    # B leaves: A's request comes back, and its next hit has the value and the one before.
    assert b.interrupt() == 130
    b.expect(event="removed", reason="client")
    restored = expect_event(a, "restored")
    assert restored.breakpoint_id == weakest.id
    assert isinstance(restored.payload, hwbkpt.Restored)
    assert restored.payload.tids == (pid,)

    touch = daemon.cli_json("sim", "touch", "--pid", str(pid), hex(weakest.spec.address),
                            "--value", "42")[0]  # fmt: skip
    assert touch["breakpoint_ids"] == [weakest.id]
    hit = expect_event(a, "hit")
    assert hit.breakpoint_id == weakest.id
    assert isinstance(hit.payload, hwbkpt.Hit)
    assert (hit.payload.value_int, hit.payload.old_value_int) == (42, 7)
    assert (hit.payload.tid, hit.payload.address) == (pid, weakest.spec.address)
    a.close()


def test_same_chunk_shares_one_slot_and_both_get_each_hit(daemon: Daemon) -> None:
    pid, _ = daemon.spawn()
    addr = hex(BASE + 0x100)
    a = daemon.watch("--pid", str(pid), addr, "--name", "A")
    b = daemon.watch("--pid", str(pid), addr, "--name", "B", "--priority", "high")
    a_id, b_id = a.seen[0]["breakpoint"], b.seen[0]["breakpoint"]

    (thread,) = daemon.cli_json("slots", "--pid", str(pid))
    held = [s for s in thread["slots"] if s["holders"]]
    assert len(held) == 1, thread
    assert held[0]["chunk"] == {"address": BASE + 0x100, "length": 8, "access": "write"}
    assert {(h["session"], h["breakpoint"]) for h in held[0]["holders"]} == {
        ("A", a_id),
        ("B", b_id),
    }
    # The human slot map shows the one slot with both holders.
    text = daemon.cli("slots", "--pid", str(pid)).stdout
    assert f"B#{b_id}(75) A#{a_id}(25)" in text or f"A#{a_id}(25) B#{b_id}(75)" in text

    touch = daemon.cli_json("sim", "touch", "--pid", str(pid), addr, "--value", "5")[0]
    assert sorted(touch["breakpoint_ids"]) == sorted([a_id, b_id])
    for w in (a, b):
        hit = w.expect(event="hit")
        assert (hit["value"], hit["old_value"], hit["tid"]) == (5, 0, pid)
        assert w.interrupt() == 130


def test_watch_count_ends_the_watch_and_cleans_up(daemon: Daemon) -> None:
    pid, _ = daemon.spawn()
    w = daemon.watch("--pid", str(pid), hex(BASE), "--count", "2", "--name", "counter")
    for value in (1, 2):
        daemon.cli_json("sim", "touch", "--pid", str(pid), hex(BASE), "--value", str(value))
    assert w.wait() == 0
    assert [r["value"] for r in w.seen if r["event"] == "hit"] == [1, 2]
    assert w.seen[-1]["event"] == "removed"
    # Its slot is free again.
    (thread,) = daemon.cli_json("slots", "--pid", str(pid))
    assert all(not s["holders"] for s in thread["slots"])


def test_watch_timeout_and_sigterm(daemon: Daemon) -> None:
    pid, _ = daemon.spawn()
    w = daemon.watch("--pid", str(pid), hex(BASE), "--timeout", "0.5")
    assert w.wait() == 0
    w2 = daemon.watch("--pid", str(pid), hex(BASE))
    assert w2.interrupt(sig=15) == 143
    assert w2.seen[-1]["event"] == "removed"


def test_halt_hits_are_resumed_by_the_watch(daemon: Daemon, client: hwbkpt.Client) -> None:
    pid, _ = daemon.spawn()
    w = daemon.watch("--pid", str(pid), hex(BASE), "--halt", "--count", "1")
    touch = client.sim_touch(pid, BASE, value=9)
    assert touch.halted
    hit = w.expect(event="hit")
    assert hit["halted"] is True
    assert w.wait() == 0
    (thread,) = [t for t in client.slot_map(pid).threads if t.tid == pid]
    assert not thread.halted


def test_info_and_human_output(daemon: Daemon) -> None:
    (info,) = daemon.cli_json("info")
    assert (info["machine"], info["arch"]) == ("sim", "x86_64")
    assert info["pools"] == [{"name": "dr", "slots": 4, "accesses": info["pools"][0]["accesses"]}]
    assert any(not m["available"] and m["reason"] for m in info["mechanisms"])
    text = daemon.cli("info").stdout
    assert "dr       4 slots" in text
    assert "not available:" in text
    pid, _ = daemon.spawn(threads=3)
    assert daemon.cli("sim", "spawn").stdout.strip().isdigit()
    assert len(daemon.cli_json("slots", "--pid", str(pid))) == 3
