"""Processes under a real broker: attach on first use and let go after the last (issue 3
item 6), a process another debugger traces (item 8), ``hwbkpt attach`` and ``hwbkpt launch``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator

import grpc
import pytest
from c_programs import nm_address
from native_e2e_support import (
    ARMINGS,
    HWBKPT,
    Daemon,
    Target,
    WatchProcess,
    expect_event,
    native_daemon,
    tracer_pid,
    until,
)
from session_metadata import session_md

import hwbkpt
from hwbkpt.v1 import broker_pb2, broker_pb2_grpc

pytestmark = [pytest.mark.native, pytest.mark.e2e]


@pytest.fixture(params=ARMINGS)
def arming(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def daemon(
    arming: str, tmp_path_factory: pytest.TempPathFactory, bins: dict[str, str]
) -> Iterator[Daemon]:
    # The ptrace NOTIFY path: a plain watch attaches its process as ``gdb -p`` does (under
    # --notify bpf/auto it is followed without ptrace: test_e2e_native_bpf).
    d = native_daemon(tmp_path_factory.mktemp("hwbkptd"), arming, "--notify", "ptrace")
    yield d
    assert d.stop() == 0, d.log()


def _hit(session: hwbkpt.Session, value: int) -> hwbkpt.Hit:
    ev = expect_event(session, "hit", where=lambda e: e.payload.value_int == value)  # type: ignore[union-attr]
    assert isinstance(ev.payload, hwbkpt.Hit)
    return ev.payload


def test_a_watch_attaches_and_closing_lets_go(daemon: Daemon, vars_target: Target) -> None:
    """``hwbkpt watch --pid`` on an untraced process attaches it like ``gdb -p``; when the
    watch ends the process runs on untraced."""
    t = vars_target
    assert tracer_pid(t.pid) == 0
    w = daemon.watch("--pid", str(t.pid), hex(t.address))
    broker_pid = daemon.proc.pid
    assert tracer_pid(t.pid) == broker_pid
    assert [th.tid for th in daemon.client().slot_map(t.pid).threads] == [t.pid]
    t.write(0, 5)
    hit = w.expect(event="hit")
    assert (hit["value"], hit["old_value"], hit["tid"]) == (5, 0, t.pid)
    assert w.interrupt() == 130
    until(lambda: tracer_pid(t.pid) == 0, 10, "the detach")
    with daemon.client() as c, pytest.raises(hwbkpt.HwbkptError) as err:
        c.slot_map(t.pid)
    assert err.value.code == "NOT_FOUND"
    t.write(0, 6)  # no trap left behind
    assert t.proc.poll() is None


def test_detach_then_a_fresh_broker_places_four_at_once(
    arming: str,
    tmp_path_factory: pytest.TempPathFactory,
    bins: dict[str, str],
    vars_target: Target,
) -> None:
    t = vars_target
    first = native_daemon(tmp_path_factory.mktemp("first"), arming)
    try:
        with first.client() as c:
            s = c.open_session("first")
            for i in range(4):
                assert s.watch(t.address + 8 * i, pid=t.pid).state.value == "installed"
            t.write(3, 33)
            assert _hit(s, 33).address == t.address + 24
            s.close()
        # The broker let go: not traced, running, no slot left armed.
        assert tracer_pid(t.pid) == 0
        for i in range(4):
            t.write(i, 100 + i)
        assert t.proc.poll() is None
    finally:
        assert first.stop() == 0, first.log()
    fresh = native_daemon(tmp_path_factory.mktemp("fresh"), arming)
    try:
        with fresh.client() as c:
            s = c.open_session("fresh")
            bps = [s.watch(t.address + 8 * i, pid=t.pid) for i in range(4)]
            assert [bp.state.value for bp in bps] == ["installed"] * 4
            (thread,) = c.slot_map(t.pid).threads
            assert [slot.external for slot in thread.slots] == [False] * 4
            for i in range(4):
                t.write(i, 200 + i)
                hit = _hit(s, 200 + i)
                assert (hit.old_value_int, hit.address) == (100 + i, t.address + 8 * i)
            s.close()
        assert tracer_pid(t.pid) == 0
    finally:
        assert fresh.stop() == 0, fresh.log()
    t.write(0, 1)
    assert t.finish()[0] == 0


def test_a_process_under_gdb_is_refused_naming_gdb(daemon: Daemon, vars_target: Target) -> None:
    if not _have("gdb"):
        pytest.skip("gdb is not installed")
    t = vars_target
    gdb = subprocess.Popen(
        ["gdb", "-q", "-nx", "-batch", "-p", str(t.pid), "-ex", "shell sleep 60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        until(lambda: tracer_pid(t.pid) == gdb.pid, 30, "gdb to attach")
        with grpc.insecure_channel(daemon.address) as channel:
            stub = broker_pb2_grpc.BrokerServiceStub(channel)
            token = stub.OpenSession(broker_pb2.OpenSessionRequest(name="late")).token
            with pytest.raises(grpc.RpcError) as err:
                stub.AttachProcess(
                    broker_pb2.AttachProcessRequest(pid=t.pid), metadata=session_md(token)
                )
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert f"pid {gdb.pid}" in (err.value.details() or "")
            assert "--nonstop" in (err.value.details() or "")
            spec = broker_pb2.BreakpointSpec(
                scope=broker_pb2.SCOPE_PROCESS,
                pid=t.pid,
                address=t.address,
                length=8,
                access=broker_pb2.ACCESS_WRITE,
            )
            with pytest.raises(grpc.RpcError) as err:
                stub.SetBreakpoint(
                    broker_pb2.SetBreakpointRequest(spec=spec), metadata=session_md(token)
                )
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert f"pid {gdb.pid}" in (err.value.details() or "")
        assert tracer_pid(t.pid) == gdb.pid  # gdb keeps it
    finally:
        gdb.kill()
        gdb.wait(10)


def test_hwbkpt_attach_holds_then_detaches(daemon: Daemon, vars_target: Target) -> None:
    t = vars_target
    a = WatchProcess(
        [str(HWBKPT), "--server", daemon.address, "--json", "attach", "--pid", str(t.pid)]
    )
    daemon.clients.append(a)
    rec = a.expect(event="attached")
    assert (rec["pid"], rec["tids"]) == (t.pid, [t.pid])
    assert tracer_pid(t.pid) == daemon.proc.pid
    t.write(1, 7)  # attached without requests: runs on
    assert a.interrupt() == 130
    assert a.seen[-1] == {"event": "detached", "pid": t.pid}
    assert tracer_pid(t.pid) == 0


def test_hwbkpt_attach_ends_with_the_process(daemon: Daemon, bins: dict[str, str]) -> None:
    t = Target([bins["vars"]])
    try:
        a = WatchProcess(
            [str(HWBKPT), "--server", daemon.address, "--json", "attach", "--pid", str(t.pid)]
        )
        daemon.clients.append(a)
        a.expect(event="attached")
        t.finish()
        exited = a.expect(event="target_exited")
        assert (exited["pid"], exited["exit_code"]) == (t.pid, 0)
        assert a.wait() == 0
    finally:
        t.kill()


def test_hwbkpt_launch_with_a_watch(daemon: Daemon, bins: dict[str, str]) -> None:
    n = 100
    exe = bins["writer"]
    address = nm_address(exe, "watched")
    done = subprocess.run(
        [
            str(HWBKPT),
            "--server",
            daemon.address,
            "--json",
            "launch",
            "--watch",
            hex(address),
            "--timeout",
            "60",
            "--",
            exe,
            str(n),
            "0",
            "nowait",
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    first = records[0]
    assert first["event"] == "launched"
    assert first["argv"][0] == exe
    pid = first["pid"]
    assert records[1]["event"] == "state"
    assert records[1]["state"] == "installed"
    hits = [r for r in records if r["event"] == "hit"]
    # Held at its first instruction until the watch was set: not one write is missed.
    assert [h["value"] for h in hits] == list(range(1, n + 1))
    assert [h["old_value"] for h in hits] == list(range(n))
    assert all(h["pid"] == pid and h["address"] == address for h in hits)
    assert records[-1]["event"] == "target_exited"
    assert (records[-1]["pid"], records[-1]["exit_code"]) == (pid, 0)
    assert f'"done {n}"' not in done.stdout  # its output goes to the broker's, not ours


def test_launch_release_through_the_library(daemon: Daemon, bins: dict[str, str]) -> None:
    exe = bins["writer"]
    address = nm_address(exe, "watched")
    with daemon.client() as c:
        owner = c.open_session("owner")
        other = c.open_session("other")
        pid = owner.launch_process([exe, "3", "0", "nowait"])
        assert tracer_pid(pid) == daemon.proc.pid
        bp = owner.watch(address, pid=pid)
        assert bp.state.value == "installed"
        with pytest.raises(hwbkpt.HwbkptError) as err:
            other.release_process(pid)
        assert err.value.code == "PERMISSION_DENIED"
        owner.release_process(pid)
        values = []
        while len(values) < 3:
            values.append(_hit(owner, len(values) + 1).value_int)
        assert values == [1, 2, 3]
        exited = expect_event(owner, "target_exited", where=lambda e: e.breakpoint_id == 0)
        assert exited.payload == hwbkpt.TargetExited(pid=pid, tid=0, exit_code=0)
        with pytest.raises(hwbkpt.HwbkptError) as err:
            owner.launch_process(["/no/such/program"])
        assert err.value.code == "NOT_FOUND"


def test_a_launch_is_let_go_when_its_session_ends(daemon: Daemon, bins: dict[str, str]) -> None:
    with daemon.client() as c:
        s = c.open_session("short")
        # Long enough to still run when the session ends: 10^6 writes 1 ms apart.
        pid = s.launch_process([bins["writer"], "1000000", "1000", "nowait"])
        s.release_process(pid)
        s.close()
    until(lambda: tracer_pid(pid) == 0, 10, "the detach")
    os.kill(pid, signal.SIGTERM)
    until(lambda: _state(pid) in ("Z", ""), 10, "the program to end")


def test_item5_a_launch_the_cli_gives_up_leaves_no_process(
    daemon: Daemon, bins: dict[str, str]
) -> None:
    """Issue 9 item 5: ``hwbkpt launch`` refuses the watch (exit 2) after the program
    was started; the program must not run on untraced."""
    done = daemon.cli(
        "--json", "launch", "--watch", "no_such_symbol", "--",
        bins["writer"], "1000000", "1000", "nowait",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "no symbol 'no_such_symbol'" in done.stderr
    launched = json.loads(done.stdout.splitlines()[0])
    assert launched["event"] == "launched"
    # Closing the session, which the CLI waits for, killed and reaped it.
    assert _state(launched["pid"]) == ""


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_item5_a_launch_held_when_the_broker_ends_leaves_no_process(
    stop: signal.Signals,
    arming: str,
    tmp_path_factory: pytest.TempPathFactory,
    bins: dict[str, str],
) -> None:
    """Held launches die with the broker, whether it stops (SIGTERM) or is killed
    (SIGKILL: PTRACE_O_EXITKILL); a released one runs on."""
    d = native_daemon(tmp_path_factory.mktemp("hwbkptd"), arming)
    pids: list[int] = []
    try:
        with d.client() as c:
            s = c.open_session("holder")
            held = s.launch_process([bins["writer"], "1000000", "1000", "nowait"])
            pids.append(held)
            ran = s.launch_process([bins["writer"], "1000000", "1000", "nowait"])
            pids.append(ran)
            s.release_process(ran)
            assert _state(held) == "t"  # held at its exec stop
            d.proc.send_signal(stop)
            assert d.proc.wait(15) == (0 if stop == signal.SIGTERM else -signal.SIGKILL)
        # Its parent gone, init reaps it: gone or a zombie, never running.
        until(lambda: _state(held) in ("Z", ""), 10, "the held launch to end")
        assert _state(ran) in ("S", "R")
    finally:
        d.stop()
        for pid in pids:
            if _state(pid) not in ("Z", ""):
                os.kill(pid, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _have(tool: str) -> bool:
    return shutil.which(tool) is not None


def test_attach_errors_keep_their_status(daemon: Daemon) -> None:
    with daemon.client() as c, c.open_session("bad") as s:
        with pytest.raises(hwbkpt.HwbkptError) as err:
            s.attach_process(4_000_000)  # above pid_max: no such process
        assert (err.value.code, err.value.fields) == ("NOT_FOUND", ("pid",))
        with pytest.raises(hwbkpt.HwbkptError) as err:
            s.watch(0x404000, pid=4_000_000)
        assert (err.value.code, err.value.fields) == ("NOT_FOUND", ("spec.pid",))
        with pytest.raises(hwbkpt.HwbkptError) as err:
            s.attach_process(daemon.proc.pid)
        assert err.value.code == "FAILED_PRECONDITION"
        assert "cannot trace itself" in err.value.message


def test_detach_process_removes_the_session_s_watches_and_lets_go(
    daemon: Daemon, vars_target: Target
) -> None:
    t = vars_target
    with daemon.client() as client:
        s = client.open_session("detacher")
        assert s.attach_process(t.pid) == (t.pid,)
        bp = s.watch(t.address, pid=t.pid)
        t.write(0, 3)
        assert _hit(s, 3).tid == t.pid
        assert s.detach_process(t.pid) is True
        removed = expect_event(s, "removed", where=lambda e: e.breakpoint_id == bp.id)
        assert isinstance(removed.payload, hwbkpt.Removed)
        assert removed.payload.reason == "detached"
        assert s.list() == []
        until(lambda: tracer_pid(t.pid) == 0, 10, "the broker to let the process go")
        t.write(0, 4)  # runs untraced, no trap left behind
        with pytest.raises(hwbkpt.HwbkptError) as err:
            s.detach_process(t.pid)
        assert err.value.code == "NOT_FOUND"
    assert t.finish()[0] == 0
