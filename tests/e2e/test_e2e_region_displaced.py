"""Issue 9 item 9 on ``sim`` (one pool of 4), through gRPC and the CLI.

A 32-byte region needs four slots; one stronger 8-byte request displaces it whole
(a request is installed whole or not at all). The slot map shows the stronger
request in one slot and the other three free, and the ``displaced`` event names the
chunk whose slot was taken.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import Daemon, expect_event

import hwbkpt

pytestmark = pytest.mark.e2e

BASE = 0x601000
KBASE = 0xFFFF_FFFF_8200_0000


def _chunk(address: int) -> dict[str, Any]:
    return {"pool": "dr", "address": address, "length": 8, "access": "write"}


def _held_and_free(thread: dict[str, Any]) -> tuple[list[dict[str, Any]], list[int]]:
    held = [s for s in thread["slots"] if s["chunk"] is not None]
    free = [s["index"] for s in thread["slots"] if s["chunk"] is None and not s["external"]]
    return held, free


def test_item9_displaced_region_names_the_taken_chunk_and_frees_the_rest(
    daemon: Daemon, client: hwbkpt.Client
) -> None:
    pid, _ = daemon.spawn()
    region = daemon.watch("--pid", str(pid), "--length", "32", hex(BASE), "--name", "IDE")
    assert region.seen[0]["state"] == "installed"
    (thread,) = daemon.cli_json("slots", "--pid", str(pid))[:1]
    assert [s["chunk"]["address"] for s in thread["slots"]] == [BASE + 8 * i for i in range(4)]

    strong = client.open_session("tracer")
    bp = strong.watch(BASE + 0x100, pid=pid, priority="high")
    assert bp.state is hwbkpt.BreakpointState.INSTALLED

    # The stronger chunk went into the slot of the region's first chunk: that one was
    # taken, the region's three others left their slots free.
    displaced = region.expect(event="displaced")
    assert (displaced["by_session"], displaced["by_breakpoint"]) == ("tracer", bp.id)
    assert displaced["tids"] == [pid]
    assert displaced["taken"] == [_chunk(BASE)]
    region.expect(event="state", state="pending", reason="priority")

    records = daemon.cli_json("slots", "--pid", str(pid))
    held, free = _held_and_free(records[0])
    assert [(s["index"], s["chunk"]["address"]) for s in held] == [(0, BASE + 0x100)]
    assert [h["session"] for h in held[0]["holders"]] == ["tracer"]
    assert free == [1, 2, 3]
    (waiting,) = [r["waiting"] for r in records if "waiting" in r]
    assert (waiting["session"], waiting["length"]) == ("IDE", 32)
    text = daemon.cli("slots", "--pid", str(pid)).stdout
    assert text.count("free") == 3, text

    # The library sees the same taken chunk.
    strong.remove(bp.id)
    restored = region.expect(event="restored")
    assert restored["tids"] == [pid]
    assert region.interrupt() == 130
    ide = client.open_session("IDE2")
    wide = ide.watch(BASE, pid=pid, length=32)
    again = strong.watch(BASE + 0x100, pid=pid, priority="high")
    event = expect_event(ide, "displaced")
    assert event.breakpoint_id == wide.id
    assert isinstance(event.payload, hwbkpt.Displaced)
    assert event.payload.taken == (hwbkpt.Chunk("dr", BASE, 8, hwbkpt.Access.WRITE),)
    strong.remove(again.id)
    ide.close()
    strong.close()
    client.sim_end_process(pid)


def test_item9_displaced_kernel_region_frees_the_rest_on_every_context(
    daemon: Daemon, client: hwbkpt.Client
) -> None:
    pid, _ = daemon.spawn()
    region = daemon.watch("--kernel", "--length", "32", hex(KBASE), "--name", "kwatch")
    strong = client.open_session("ktracer")
    bp = strong.watch(KBASE + 0x1000, kernel=True, priority="high")
    assert bp.state is hwbkpt.BreakpointState.INSTALLED

    displaced = region.expect(event="displaced")
    assert displaced["by_session"] == "ktracer"
    assert {0, pid} <= set(displaced["tids"])  # the CPUs and the traced threads
    assert displaced["taken"] == [_chunk(KBASE)]

    records = [r for r in daemon.cli_json("slots") if r.get("tid") in (0, pid)]
    assert [r["tid"] for r in records] == [0, pid]
    for thread in records:
        held, free = _held_and_free(thread)
        assert [s["chunk"]["address"] for s in held] == [KBASE + 0x1000], thread
        assert free == [1, 2, 3], thread
    strong.close()
    assert region.interrupt() == 130
    client.sim_end_process(pid)
