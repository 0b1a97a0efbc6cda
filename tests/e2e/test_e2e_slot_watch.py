"""WatchSlotMap (issue 14, item 3's feed): an update at once, one after each change with the
news, nothing while nothing changes; NOT_FOUND for a pid that is not traced; the stream ends
when the broker stops, its last update carrying the sessions' removals."""

from __future__ import annotations

import queue
import signal
import threading
from pathlib import Path

import pytest
from e2e_support import start_daemon

import hwbkpt

pytestmark = pytest.mark.e2e


def test_updates_follow_changes_and_end_with_the_broker(tmp_path: Path) -> None:
    d = start_daemon(tmp_path, machine="sim:dr=1")
    updates: queue.Queue[hwbkpt.SlotMapUpdate | None] = queue.Queue()
    watcher = hwbkpt.Client(d.address)

    def read() -> None:
        for update in watcher.watch_slot_map(min_interval=0.05):
            updates.put(update)
        updates.put(None)

    try:
        with d.client() as c:
            proc = c.sim_spawn()
            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            first = updates.get(timeout=10)
            assert first is not None
            assert [t.pid for t in first.slot_map.threads] == [proc.pid]
            assert first.sessions == ()
            with pytest.raises(queue.Empty):
                updates.get(timeout=0.5)  # nothing changed: nothing sent
            low, high = c.open_session("low"), c.open_session("high")
            bp = low.watch(0x601000, pid=proc.pid)
            strong = high.watch(0x602000, pid=proc.pid, priority=75)
            news: list[hwbkpt.SessionNews] = []
            latest = first
            while not any(n.event.kind == "displaced" for n in news):
                got = updates.get(timeout=10)
                assert got is not None
                news.extend(got.news)
                latest = got
            (displaced,) = [n for n in news if n.event.kind == "displaced"]
            assert (displaced.session_name, displaced.event.breakpoint_id) == ("low", bp.id)
            assert isinstance(displaced.event.payload, hwbkpt.Displaced)
            assert displaced.event.payload.by_breakpoint_id == strong.id
            c.sim_touch(proc.pid, 0x602000, value=1)
            while latest.hits.get(strong.id, 0) < 1:
                got = updates.get(timeout=10)
                assert got is not None
                latest = got
            assert {name for _, name in latest.sessions} == {"low", "high"}
            with pytest.raises(hwbkpt.HwbkptError) as info:
                next(iter(watcher.watch_slot_map(pid=4242)))
            assert info.value.code == "NOT_FOUND"
            d.proc.send_signal(signal.SIGTERM)
            assert d.proc.wait(10) == 0
            last: list[hwbkpt.SlotMapUpdate] = []
            while (got := updates.get(timeout=10)) is not None:
                last.append(got)
            removed = [n for u in last for n in u.news if n.event.kind == "removed"]
            assert {(n.session_name, n.event.breakpoint_id) for n in removed} >= {
                ("low", bp.id),
                ("high", strong.id),
                ("low", 0),
                ("high", 0),
            }
    finally:
        watcher.close()
        d.stop()
