"""Issue 14, item 3: ``hwbkpt top`` driven in tmux (send-keys, capture-pane) shows two
sessions' slots on a real process, then a displacement as it happens; ``q`` quits."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from native_e2e_support import HWBKPT, Daemon, Target, native_daemon

pytestmark = pytest.mark.e2e


def _tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", *args], capture_output=True, text=True, timeout=10, check=True
    ).stdout


class Pane:
    def __init__(self, command: str) -> None:
        self.name = f"hwbkpt-top-{uuid.uuid4().hex[:8]}"
        _tmux("new-session", "-d", "-s", self.name, "-x", "200", "-y", "50", command)

    def text(self) -> str:
        return _tmux("capture-pane", "-p", "-t", self.name)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.text()
            if re.search(pattern, screen, flags=re.M):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} on the screen:\n{self.text()}")

    def alive(self) -> bool:
        done = subprocess.run(["tmux", "has-session", "-t", self.name], capture_output=True)
        return done.returncode == 0

    def kill(self) -> None:
        if self.alive():
            subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def broker(tmp_path: Path, bins: dict[str, str]) -> Iterator[tuple[Daemon, Target]]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (apt-get install tmux)")
    d = native_daemon(tmp_path)
    target = Target([bins["vars"]])
    assert target.readline() == "ready"
    try:
        yield d, target
    finally:
        target.kill()
        assert d.stop() == 0, d.log()


def test_item3_top_shows_two_sessions_and_a_displacement_live(
    broker: tuple[Daemon, Target],
) -> None:
    d, target = broker
    pid, var = target.pid, target.address
    with d.client() as c:
        ide, tracer = c.open_session("ide"), c.open_session("tracer")
        ide_bp = ide.watch(var, pid=pid, priority=25)
        tracer_bp = tracer.watch(var + 8, pid=pid, priority=50)
        pane = Pane(f"{HWBKPT} --server {d.address} top --pid {pid}")
        try:
            row = rf"│ {pid}\s+│ {pid}\s+│ dr\d\s+│ {{addr:#x}}/8 write\s+│ {{who}}\s+│ {{prio}}\s"
            screen = pane.wait_for(row.format(addr=var, who=f"ide#{ide_bp.id}", prio=25))
            assert re.search(
                row.format(addr=var + 8, who=f"tracer#{tracer_bp.id}", prio=50), screen, re.M
            ), screen
            assert "sessions: ide, tracer" in screen, screen
            # Hits show up in the holder's count as the target writes.
            for value in range(1, 4):
                target.write(1, value)
            pane.wait_for(rf"tracer#{tracer_bp.id}\s+│ 50\s+│ [\d.]+\s+│ 3\s", timeout=10)
            # Three high requests need three of the four slots: the weakest (ide) goes.
            agent = c.open_session("agent")
            for i in range(2, 5):
                agent.watch(var + 8 * i, pid=pid, priority=75)
            screen = pane.wait_for(rf"ide#{ide_bp.id} displaced by agent#\d+\(75\) in tids {pid}")
            assert re.search(
                rf"│ priority │ ide#{ide_bp.id}\(25\) pid {pid} {var:#x}/8 write: pending", screen
            ), screen
            assert not re.search(rf"│ ide#{ide_bp.id}\s+│", screen), screen
            pane.wait_for(r"sessions: ide, tracer, agent")
            _tmux("send-keys", "-t", pane.name, "q")
            deadline = time.monotonic() + 10
            while pane.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not pane.alive(), "q did not quit top"
        finally:
            pane.kill()
        for s in (ide, tracer, agent):
            s.close()
