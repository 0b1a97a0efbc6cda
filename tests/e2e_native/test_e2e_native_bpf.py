"""Issue 11 through the whole stack: ``hwbkptd --notify bpf`` serves NOTIFY watches with a
BPF program at the trap: exact values, no thread ever stopped, no ptrace.

Items: 1 (every write of a tight loop, exact values and old values, over gRPC),
2 (beside gdb: exact values, the target never in a ptrace stop of ours),
3 (a broker kill -9 with four NOTIFY watches on a tight loop: no death),
7 (forced --notify sample serves NOTIFY without ptrace; ptrace: the other e2e modules),
5 (an equals filter evaluated in the kernel), info (which mechanism serves what).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from native_e2e_support import (
    Daemon,
    Target,
    expect_event,
    hits_of,
    native_daemon,
    native_reason,
    quiet_events,
    tracer_pid,
    until,
)

import hwbkpt

pytestmark = [pytest.mark.native, pytest.mark.e2e]

N_WRITES = 100_000


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, bins: dict[str, str]) -> Iterator[Daemon]:
    assert not native_reason()
    d = native_daemon(
        tmp_path_factory.mktemp("hwbkptd-bpf"),
        "perf",
        "--notify",
        "bpf",
        "--max-hit-buffer",
        "1000000",
    )
    yield d
    assert d.stop() == 0, d.log()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def _collect(
    session: hwbkpt.Session, bp_id: int, n: int, target: Target, timeout: float = 120
) -> tuple[list[hwbkpt.Event], set[str]]:
    """Events until ``n`` hits of ``bp_id`` came; the process states seen meanwhile."""
    seen: list[hwbkpt.Event] = []
    states: set[str] = set()
    deadline = time.monotonic() + timeout
    hits = 0
    while hits < n and time.monotonic() < deadline:
        ev = session.next_event(0.2)
        if ev is not None:
            seen.append(ev)
            hits += isinstance(ev.payload, hwbkpt.Hit) and ev.breakpoint_id == bp_id
        if len(seen) % 64 == 0 and target.proc.poll() is None:
            states.add(_state(target.pid))
    return seen, states


def test_item1_every_write_exact_value_and_old_value(daemon: Daemon, bins: dict[str, str]) -> None:
    target = Target([bins["writer"], str(N_WRITES)])
    try:
        with daemon.client() as client:
            session = client.open_session("bpf-item1", hit_buffer=N_WRITES + 100)
            bp = session.watch(target.address, pid=target.pid)
            assert bp.state is hwbkpt.BreakpointState.INSTALLED
            assert tracer_pid(target.pid) == 0  # followed, not traced
            target.send("g")
            seen, states = _collect(session, bp.id, N_WRITES, target)
            rc, out = target.finish()
            seen += quiet_events(session, 0.3)
    finally:
        target.kill()
    assert (rc, out.strip()) == (0, f"done {N_WRITES}")
    hits = hits_of(seen, bp.id)
    assert not [e for e in seen if e.kind == "hits_dropped"]
    assert len(hits) == N_WRITES
    assert [h.value_int for h in hits] == list(range(1, N_WRITES + 1))
    assert [h.old_value_int for h in hits] == list(range(N_WRITES))
    assert [h.hit_count for h in hits] == list(range(1, N_WRITES + 1))
    assert not any(h.value_late for h in hits)
    assert "t" not in states, states


def _gdb_running(pid: int) -> subprocess.Popen[str]:
    gdb = subprocess.Popen(
        ["gdb", "-q", "-nx", "-batch", "-p", str(pid), "-ex", "continue"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD}),
    )
    until(lambda: tracer_pid(pid) == gdb.pid, 30, "gdb to attach")
    until(lambda: _state(pid) != "t", 30, "gdb to let the process continue")
    return gdb


def test_item2_exact_values_beside_gdb(daemon: Daemon, bins: dict[str, str]) -> None:
    n = 20_000
    target = Target([bins["writer"], str(n), "50"])
    gdb = _gdb_running(target.pid)
    try:
        with daemon.client() as client:
            session = client.open_session("bpf-gdb", hit_buffer=n + 100)
            bp = session.watch(target.address, pid=target.pid)  # a plain NOTIFY watch
            assert bp.state is hwbkpt.BreakpointState.INSTALLED
            assert tracer_pid(target.pid) == gdb.pid
            target.send("g")
            seen, states = _collect(session, bp.id, n, target)
            rc, out = target.finish()
    finally:
        target.kill()
        gdb_out = gdb.communicate(timeout=30)[0]
    assert (rc, out.strip()) == (0, f"done {n}")
    hits = hits_of(seen, bp.id)
    assert len(hits) == n
    assert [h.value_int for h in hits] == list(range(1, n + 1))
    assert not any(h.value_late for h in hits)
    assert "t" not in states, states  # never in a ptrace stop
    assert "exited normally" in gdb_out, gdb_out


def test_item5_equals_filtered_in_the_kernel_counts_every_hit(
    daemon: Daemon, bins: dict[str, str]
) -> None:
    """One thread (born after arming) writes 1..N; one value matches: one record leaves
    the kernel, and the request still counts every hit."""
    n, match = 1_000_000, 654_321
    tagged = 1 << 32  # tests/c/tagged.c: thread 1 writes (1 << 32) | i
    target = Target([bins["tagged"], "1", str(n)])
    try:
        with daemon.client() as client:
            session = client.open_session("bpf-item5")
            bp = session.set_breakpoint(
                address=target.address, pid=target.pid, access="write", equals=tagged | match
            )
            target.send("g")
            assert target.readline() == "done"
            until(lambda: session.list()[0].hit_count == n, 30, f"hit_count {n}")
            seen = quiet_events(session, 0.5)
            rc, _ = target.finish()
    finally:
        target.kill()
    assert rc == 0
    hits = hits_of(seen, bp.id)
    assert [(h.value_int, h.old_value_int, h.hit_count) for h in hits] == [
        (tagged | match, tagged | (match - 1), match)
    ]
    assert not any(h.value_late for h in hits)


def _kill_broker_with_four_watches(tmp_path: Path, bins: dict[str, str]) -> tuple[int, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    d = native_daemon(tmp_path, "perf", "--notify", "bpf")
    target = Target([bins["writer"], "3000000", "0", "4"])
    try:
        with d.client() as client:
            s = client.open_session("doomed", hit_buffer=1000)
            for i in range(4):
                s.watch(target.address + 8 * i, pid=target.pid)
            target.send("g")
            assert expect_event(s, "hit", 10) is not None
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(10)
        return target.finish()
    finally:
        target.kill()
        d.stop()


def test_item3_broker_kill_with_four_notify_watches_three_runs(
    tmp_path: Path, bins: dict[str, str]
) -> None:
    results = [_kill_broker_with_four_watches(tmp_path / str(i), bins) for i in range(3)]
    assert [(rc, out.strip()) for rc, out in results] == [(0, "done 3000000")] * 3


@pytest.mark.soak
@pytest.mark.skipif(os.environ.get("HWBKPT_SOAK") != "1", reason="soak: set HWBKPT_SOAK=1")
def test_item3_broker_kill_with_four_notify_watches_fifty_runs(
    tmp_path: Path, bins: dict[str, str]
) -> None:
    results = [_kill_broker_with_four_watches(tmp_path / str(i), bins) for i in range(50)]
    deaths = [r for r in results if r[0] != 0]
    assert not deaths, f"{len(deaths)} deaths in 50 runs: {deaths[:3]}"


def test_info_says_bpf_serves_notify_and_what_it_needs(daemon: Daemon) -> None:
    (info,) = daemon.cli_json("info")
    text = repr(info)
    assert "--notify bpf" in text
    assert "CAP_BPF" in text
    assert "CAP_PERFMON" in text


def test_item7_forced_sample_serves_notify_without_ptrace(
    tmp_path: Path, bins: dict[str, str]
) -> None:
    """``--notify sample``: a plain NOTIFY watch is served by perf samples (values read late),
    its process followed, not traced."""
    n = 2_000
    d = native_daemon(tmp_path, "perf", "--notify", "sample")
    target = Target([bins["writer"], str(n), "500"])
    try:
        with d.client() as client:
            session = client.open_session("sample", hit_buffer=n + 100)
            bp = session.watch(target.address, pid=target.pid)
            assert bp.state is hwbkpt.BreakpointState.INSTALLED
            assert tracer_pid(target.pid) == 0
            target.send("g")
            seen, states = _collect(session, bp.id, n, target)
            rc, out = target.finish()
    finally:
        target.kill()
        assert d.stop() == 0, d.log()
    assert (rc, out.strip()) == (0, f"done {n}")
    hits = hits_of(seen, bp.id)
    assert len(hits) == n
    assert [h.hit_count for h in hits] == list(range(1, n + 1))
    assert all(h.value_late for h in hits)
    assert "t" not in states, states
