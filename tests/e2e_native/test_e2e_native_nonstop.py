"""Non-stop watches through the whole stack (issue 4 item 6 and the non-stop rules): a real
``hwbkptd --machine native``, real C targets, perf events instead of ptrace stops."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
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
from session_metadata import session_md

import hwbkpt
from hwbkpt.v1 import broker_pb2, broker_pb2_grpc

pytestmark = [pytest.mark.native, pytest.mark.e2e]

#: Item 6: N writes at 1,000 a second while gdb holds the process.
N_WRITES = 2_000
DELAY_US = 1_000


@pytest.fixture(scope="module", params=("ptrace", "sample"))
def daemon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, bins: dict[str, str]
) -> Iterator[Daemon]:
    """Issue 11 item 7: the perf non-stop mechanism passes these under ``--notify ptrace``
    and ``--notify sample`` (where it serves NOTIFY requests too)."""
    assert not native_reason()
    d = native_daemon(tmp_path_factory.mktemp("hwbkptd-nonstop"), "perf", "--notify", request.param)
    yield d
    assert d.stop() == 0, d.log()


def _unblock_sigchld() -> None:
    # The test process blocks SIGCHLD (tests/conftest.py, as hwbkptd does); a gdb that
    # inherits the mask never hears of its inferior's stops.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


def _gdb_running(pid: int, output: int = subprocess.PIPE) -> subprocess.Popen[str]:
    """gdb attached to ``pid`` and letting it run (``continue``) until it exits."""
    gdb = subprocess.Popen(
        ["gdb", "-q", "-nx", "-batch", "-p", str(pid), "-ex", "continue"],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_unblock_sigchld,
    )
    until(lambda: tracer_pid(pid) == gdb.pid, 30, "gdb to attach")
    until(lambda: _state(pid) != "t", 30, "gdb to let the process continue")
    return gdb


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def test_every_write_is_a_hit_while_gdb_holds_the_process(
    daemon: Daemon, bins: dict[str, str]
) -> None:
    target = Target([bins["writer"], str(N_WRITES), str(DELAY_US)])
    gdb = _gdb_running(target.pid)
    try:
        with daemon.client() as client:
            session = client.open_session("nonstop", hit_buffer=N_WRITES + 100)
            bp = session.watch(target.address, pid=target.pid, nonstop=True)
            assert bp.state is hwbkpt.BreakpointState.INSTALLED
            assert bp.installed_tids == (target.pid,)
            assert tracer_pid(target.pid) == gdb.pid  # the broker did not take it
            target.send("g")
            seen: list[hwbkpt.Event] = []
            # The target runs under gdb the whole time: never in a ptrace stop ('t').
            states = {_state(target.pid)}
            deadline = time.monotonic() + 60
            while len(hits_of(seen, bp.id)) < N_WRITES and time.monotonic() < deadline:
                ev = session.next_event(0.2)
                if ev is not None:
                    seen.append(ev)
                if target.proc.poll() is None:
                    states.add(_state(target.pid))
            rc, out = target.finish()
            seen += quiet_events(session, 0.5)
    finally:
        target.kill()
        gdb_out = gdb.communicate(timeout=30)[0]
    assert (rc, out.strip()) == (0, f"done {N_WRITES}")
    hits = hits_of(seen, bp.id)
    assert not [e for e in seen if e.kind == "hits_dropped"]
    assert len(hits) == N_WRITES
    assert [h.hit_count for h in hits] == list(range(1, N_WRITES + 1))
    assert {(h.pid, h.tid, h.address) for h in hits} == {(target.pid, target.pid, target.address)}
    assert all(h.value_late for h in hits)
    # Read after the sample, while the target runs on: never older than the write that
    # trapped, and (1 ms between writes) rarely more than a few writes newer. Hits read
    # after the target exited have no value: only the last few may be such.
    valued = [(i, h.value_int) for i, h in enumerate(hits, 1) if h.value_int is not None]
    assert len(valued) >= N_WRITES - 50
    assert all(i > valued[-1][0] for i, h in enumerate(hits, 1) if h.value_int is None)
    lags = sorted(value - i for i, value in valued)
    assert lags[0] >= 0, lags[:10]
    assert lags[len(lags) // 2] <= 2, f"median lag {lags[len(lags) // 2]} writes"
    assert "t" not in states, states
    # gdb kept working: it saw the program run to its end.
    assert "exited normally" in gdb_out, gdb_out


# A plain (NOTIFY) watch traces the process only where ptrace serves NOTIFY.
@pytest.mark.parametrize("daemon", ["ptrace"], indirect=True)
def test_nonstop_and_ptrace_requests_share_a_threads_slots(
    daemon: Daemon, vars_target: Target
) -> None:
    t = vars_target
    with daemon.client() as client:
        fill = client.open_session("fill")
        watcher = client.open_session("watcher")
        held = [fill.watch(t.address + 8 * i, pid=t.pid, priority="high") for i in range(4)]
        assert all(b.state is hwbkpt.BreakpointState.INSTALLED for b in held)
        assert tracer_pid(t.pid) == daemon.proc.pid
        bp = watcher.watch(t.address + 8 * 5, pid=t.pid, nonstop=True)
        assert bp.state is hwbkpt.BreakpointState.PENDING  # four slots, all held
        fill.remove(held[0].id)
        ev = expect_event(watcher, "restored", where=lambda e: e.breakpoint_id == bp.id)
        assert ev.breakpoint_id == bp.id
        t.write(5, 77)
        hit = expect_event(watcher, "hit").payload
        assert isinstance(hit, hwbkpt.Hit)
        assert (hit.value_int, hit.value_late, hit.halted) == (77, True, False)
        # The ptrace watches on the same thread keep working beside it.
        t.write(1, 5)
        got = expect_event(fill, "hit").payload
        assert isinstance(got, hwbkpt.Hit)
        assert (got.value_int, got.value_late) == (5, False)


# A plain (NOTIFY) watch traces the process only where ptrace serves NOTIFY.
@pytest.mark.parametrize("daemon", ["ptrace"], indirect=True)
def test_a_stopping_request_takes_a_nonstop_process_over(
    daemon: Daemon, vars_target: Target
) -> None:
    t = vars_target
    with daemon.client() as client:
        s = client.open_session("upgrade")
        quiet = s.watch(t.address, pid=t.pid, nonstop=True)
        assert quiet.state is hwbkpt.BreakpointState.INSTALLED
        assert tracer_pid(t.pid) == 0  # followed, not traced
        t.write(0, 3)
        assert expect_event(s, "hit").payload.value_int == 3  # type: ignore[union-attr]
        loud = s.watch(t.address + 8, pid=t.pid)
        assert loud.state is hwbkpt.BreakpointState.INSTALLED
        assert tracer_pid(t.pid) == daemon.proc.pid
        t.write(1, 4)
        t.write(0, 5)
        values = sorted(h.value_int for h in hits_of(quiet_events(s, 1.0)))
        assert values == [4, 5]
        s.remove(loud.id)
        s.remove(quiet.id)
    until(lambda: tracer_pid(t.pid) == 0, 10, "the broker to let the process go")
    t.write(0, 6)
    assert t.finish()[0] == 0


# A plain (NOTIFY) watch traces the process only where ptrace serves NOTIFY.
@pytest.mark.parametrize("daemon", ["ptrace"], indirect=True)
def test_a_stopping_request_on_a_process_under_gdb_changes_nothing(
    daemon: Daemon, vars_target: Target
) -> None:
    t = vars_target
    gdb = _gdb_running(t.pid, subprocess.DEVNULL)
    try:
        with daemon.client() as client:
            s = client.open_session("beside-gdb")
            quiet = s.watch(t.address, pid=t.pid, nonstop=True)
            with pytest.raises(hwbkpt.HwbkptError) as err:
                s.watch(t.address + 8, pid=t.pid)
            assert err.value.code == "FAILED_PRECONDITION"
            assert f"pid {gdb.pid}" in err.value.message
            assert [b.id for b in s.list()] == [quiet.id]
            t.write(0, 9)
            assert expect_event(s, "hit").payload.value_int == 9  # type: ignore[union-attr]
        assert tracer_pid(t.pid) == gdb.pid
    finally:
        gdb.kill()
        gdb.wait(10)


def test_nonstop_refuses_halt_and_kernel_scope(daemon: Daemon, vars_target: Target) -> None:
    with grpc.insecure_channel(daemon.address) as channel:
        stub = broker_pb2_grpc.BrokerServiceStub(channel)
        token = stub.OpenSession(broker_pb2.OpenSessionRequest(name="bad")).token
        spec = broker_pb2.BreakpointSpec(
            scope=broker_pb2.SCOPE_PROCESS,
            pid=vars_target.pid,
            address=vars_target.address,
            length=8,
            access=broker_pb2.ACCESS_WRITE,
            action=broker_pb2.ACTION_HALT,
            nonstop=True,
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.SetBreakpoint(
                broker_pb2.SetBreakpointRequest(spec=spec), metadata=session_md(token)
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert tracer_pid(vars_target.pid) == 0  # refused before attaching anything


def test_hwbkpt_watch_nonstop_from_the_command_line(daemon: Daemon, vars_target: Target) -> None:
    t = vars_target
    w = daemon.watch("--pid", str(t.pid), hex(t.address), "--nonstop")
    assert tracer_pid(t.pid) == 0  # followed without ptrace
    t.write(0, 41)
    hit = w.expect(event="hit")
    assert (hit["value"], hit["old_value"], hit["tid"]) == (41, 0, t.pid)
    assert w.interrupt() == 130
    with daemon.client() as c, pytest.raises(hwbkpt.HwbkptError) as err:
        c.slot_map(t.pid)
    assert err.value.code == "NOT_FOUND"  # let go when the watch ended
    t.write(0, 42)
    assert t.finish()[0] == 0


def _perf_fds(pid: int) -> int:
    """perf event descriptors a process holds."""
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if "perf_event" in os.readlink(fd))


def test_a_broker_killed_mid_burst_leaves_a_nonstop_target_running(
    tmp_path: Path, bins: dict[str, str]
) -> None:
    """No ptrace, no sigtrap: when the broker dies its perf events die with it and the
    target never notices, even writing as fast as it can (a ptrace watch could not
    promise that: a thread caught in its trap stop would get the SIGTRAP)."""
    _kill_broker_mid_burst(tmp_path, bins)


@pytest.mark.soak
@pytest.mark.skipif(os.environ.get("HWBKPT_SOAK") != "1", reason="soak: set HWBKPT_SOAK=1")
def test_a_broker_killed_mid_burst_twenty_times(tmp_path: Path, bins: dict[str, str]) -> None:
    for round_ in range(20):
        _kill_broker_mid_burst(tmp_path / str(round_), bins)


def _kill_broker_mid_burst(tmp_path: Path, bins: dict[str, str]) -> None:
    tmp_path.mkdir(parents=True, exist_ok=True)
    d = native_daemon(tmp_path, "perf")
    target = Target([bins["writer"], "2000000"])
    try:
        with d.client() as client:
            s = client.open_session("doomed")
            s.watch(target.address, pid=target.pid, nonstop=True)
            assert _perf_fds(d.proc.pid) > 0
            target.send("g")
            assert expect_event(s, "hit", 10) is not None
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(10)
        rc, out = target.finish()
        assert (rc, out.strip()) == (0, "done 2000000")
    finally:
        target.kill()
        d.stop()


def test_a_nonstop_target_killed_is_told_and_the_broker_carries_on(
    daemon: Daemon, bins: dict[str, str]
) -> None:
    target = Target([bins["writer"], "100000000"])
    with daemon.client() as client:
        s = client.open_session("victim")
        bp = s.watch(target.address, pid=target.pid, nonstop=True)
        target.send("g")
        assert expect_event(s, "hit", 10) is not None
        target.proc.send_signal(signal.SIGKILL)
        gone = expect_event(s, "target_exited", 10)
        assert isinstance(gone.payload, hwbkpt.TargetExited)
        assert gone.payload.pid == target.pid
        assert gone.payload.exit_code in (-1, -signal.SIGKILL, 128 + signal.SIGKILL)
        expect_event(s, "removed", 5, where=lambda e: e.breakpoint_id == bp.id)
        assert s.list() == []
        # The broker serves on, and holds no event for the dead process.
        assert client.describe().machine == "native"
    target.kill()
