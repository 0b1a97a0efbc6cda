"""The broker's SIGTERM ends a running ``hwbkpt watch`` cleanly: it reports the removal and
exits 0 instead of waiting for a broker that is gone."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from e2e_support import start_daemon

pytestmark = pytest.mark.e2e


def test_watch_ends_with_the_broker(tmp_path: Path) -> None:
    d = start_daemon(tmp_path)
    try:
        pid, _ = d.spawn()
        w = d.watch("--pid", str(pid), "0x601000")
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(15) == 0
        started = time.monotonic()
        assert w.wait(10) == 0, w.stderr
        assert time.monotonic() - started < 5
        assert w.seen[-1]["event"] == "removed"
        assert w.seen[-1]["reason"] == "shutdown"
        assert w.stderr == []
    finally:
        d.stop()
