"""Issue 14, item 5: ``hwbkpt slots --server A --server B`` shows two brokers' slots in one
table (two sockets stand for two hosts); ``hwbkpt health`` asks each one's health service."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import HWBKPT, Daemon, start_daemon

pytestmark = pytest.mark.e2e


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Daemon, Daemon]]:
    a_dir = tmp_path / "a"
    a_dir.mkdir()
    a = start_daemon(a_dir)
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    b = start_daemon(b_dir, machine="sim:exec=2,data=2")
    try:
        yield a, b
    finally:
        assert a.stop() == 0, a.log()
        assert b.stop() == 0, b.log()


def _hwbkpt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HWBKPT), *args], capture_output=True, text=True, timeout=30)


def test_item5_slots_of_two_brokers_in_one_table(two: tuple[Daemon, Daemon]) -> None:
    a, b = two
    pid_a, _ = a.spawn()
    pid_b, _ = b.spawn()
    with (
        a.client() as ca,
        ca.open_session("ide-a") as sa,
        b.client() as cb,
        cb.open_session("tracer-b") as sb,
    ):
        bp_a = sa.watch(0x601000, pid=pid_a, priority=50)
        bp_b = sb.watch(0x602000, pid=pid_b, length=4)
        done = _hwbkpt("--server", a.address, "--server", b.address, "slots")
        assert done.returncode == 0, done.stderr
        rows = done.stdout.splitlines()
        held_a = [r for r in rows if f"ide-a#{bp_a.id}(50)" in r]
        held_b = [r for r in rows if f"tracer-b#{bp_b.id}(25)" in r]
        assert len(held_a) == 1, done.stdout
        assert len(held_b) == 1, done.stdout
        assert a.address in held_a[0], done.stdout
        assert "0x601000/8 write" in held_a[0], done.stdout
        assert b.address in held_b[0], done.stdout
        assert "0x602000/4 write" in held_b[0], done.stdout
        # The x86 sim has one pool of four (dr0..dr3), the other two pools of two.
        slots_a = {
            m.group(1) for r in rows if a.address in r for m in [re.search(r"\b(dr\d)\b", r)] if m
        }
        slots_b = {
            m.group(1)
            for r in rows
            if b.address in r
            for m in [re.search(r"\b((?:exec|data)\d)\b", r)]
            if m
        }
        assert slots_a == {"dr0", "dr1", "dr2", "dr3"}, done.stdout
        assert slots_b == {"exec0", "exec1", "data0", "data1"}, done.stdout

        as_json = _hwbkpt("--server", a.address, "--server", b.address, "--json", "slots")
        assert as_json.returncode == 0, as_json.stderr
        records = [json.loads(line) for line in as_json.stdout.splitlines()]
    by_server = {r["server"]: r for r in records}
    assert set(by_server) == {a.address, b.address}
    assert (by_server[a.address]["pid"], by_server[b.address]["pid"]) == (pid_a, pid_b)
    holders = [h["session"] for r in records for s in r["slots"] for h in s["holders"]]
    assert sorted(holders) == ["ide-a", "tracer-b"]


def test_item5_health_of_each_broker(two: tuple[Daemon, Daemon], tmp_path: Path) -> None:
    a, b = two
    done = _hwbkpt("--server", a.address, "--server", b.address, "health")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{a.address} SERVING", f"{b.address} SERVING"]
    gone = f"unix:{tmp_path}/nobody.sock"
    done = _hwbkpt("--server", a.address, "--server", gone, "health")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [f"{a.address} SERVING", f"{gone} unreachable: UNAVAILABLE"]
    done = _hwbkpt("--server", a.address, "health", "--service", "no.such.Service")
    assert done.returncode == 1
    assert "NOT_FOUND" in done.stdout, done.stdout


def test_item5_one_broker_commands_refuse_two_servers(two: tuple[Daemon, Daemon]) -> None:
    a, b = two
    done = _hwbkpt("--server", a.address, "--server", b.address, "info")
    assert done.returncode == 2
    assert done.stderr.startswith("error: --server: info talks to one broker"), done.stderr
