"""Issue 9, items 1 and 8 on ``sim``: what ``hwbkpt --json watch`` prints, line by line."""

from __future__ import annotations

import signal

import pytest
from e2e_support import Daemon

import hwbkpt

pytestmark = pytest.mark.e2e

BASE = 0x601000


def test_item8_json_seq_counts_every_event_received(daemon: Daemon, client: hwbkpt.Client) -> None:
    """The stream's first state repeats the reply's: it is printed, not hidden, so the
    numbers run 0, 1, 2, ... without a hole (it was 0 then 2)."""
    pid, _ = daemon.spawn()
    w = daemon.watch("--pid", str(pid), hex(BASE), "--count", "2")
    for value in (1, 2):
        client.sim_touch(pid, BASE, value=value)
    assert w.wait() == 0
    assert [r["seq"] for r in w.seen] == list(range(len(w.seen))), w.seen
    assert [r["event"] for r in w.seen] == ["state", "state", "hit", "hit", "removed"]
    # The repeated state is the one the reply gave.
    first, repeat = w.seen[0], w.seen[1]
    assert {k: v for k, v in first.items() if k not in ("seq", "time")} == {
        k: v for k, v in repeat.items() if k not in ("seq", "time")
    }


def test_item1_count_is_the_brokers_stop_after(daemon: Daemon, client: hwbkpt.Client) -> None:
    """Three accesses land while the watch is stopped (SIGSTOP), before it can count any:
    it still prints two, and the broker is the one that ended it (the third is no hit)."""
    pid, _ = daemon.spawn()
    w = daemon.watch("--pid", str(pid), hex(BASE), "--count", "2")
    w.proc.send_signal(signal.SIGSTOP)
    try:
        touched = [client.sim_touch(pid, BASE, value=v).breakpoint_ids for v in (1, 2, 3)]
    finally:
        w.proc.send_signal(signal.SIGCONT)
    assert w.wait() == 0
    assert [len(ids) for ids in touched] == [1, 1, 0]
    assert [r["value"] for r in w.seen if r["event"] == "hit"] == [1, 2]
    assert w.seen[-1] == {**w.seen[-1], "event": "removed", "reason": "stop_after"}
