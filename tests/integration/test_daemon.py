"""hwbkptd (hwbkptd.daemon.main) as a real subprocess: start-up line, readiness, socket gate,
SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from session_metadata import session_md

from hwbkpt.v1 import broker_pb2, broker_pb2_grpc

HWBKPTD = Path(sys.executable).parent / "hwbkptd"
START_TIMEOUT = 20.0


class Proc:
    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.ready = tmp_path / "ready"
        self.stderr_path = tmp_path / "stderr.log"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [str(HWBKPTD), "--ready-file", str(self.ready), "--log-format", "json", *args],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def wait_ready(self) -> list[str]:
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready.exists():
            code = self.popen.poll()
            assert code is None, f"hwbkptd exited with {code}: {self.stderr()}"
            assert time.monotonic() < deadline, f"hwbkptd not ready: {self.stderr()}"
            time.sleep(0.02)
        return self.ready.read_text().split()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def logs(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stderr().splitlines() if line.startswith("{")]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._stderr.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    yield procs
    for proc in procs:
        proc.stop()


def _start(spawn: list[Proc], tmp_path: Path, *args: str) -> Proc:
    proc = Proc(tmp_path, *args)
    spawn.append(proc)
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_and_stops_cleanly(spawn: list[Proc], tmp_path: Path, sig: signal.Signals) -> None:
    sock = tmp_path / "run" / "hwbkpt.sock"
    proc = _start(spawn, tmp_path, "--listen", f"unix:{sock}", "--machine", "sim")
    assert proc.wait_ready() == [f"unix:{sock}"]
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
    assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o750

    started = [e for e in proc.logs() if str(e.get("event", "")).startswith("hwbkptd: listening")]
    assert len(started) == 1
    assert started[0]["event"] == f"hwbkptd: listening on unix:{sock}, machine sim (--machine sim)"
    assert started[0]["machine"] == "sim"

    with grpc.insecure_channel(f"unix:{sock}") as channel:
        stub = broker_pb2_grpc.BrokerServiceStub(channel)
        machine = stub.DescribeMachine(broker_pb2.DescribeMachineRequest()).machine
        assert machine == broker_pb2.MACHINE_KIND_SIM
        token = stub.OpenSession(broker_pb2.OpenSessionRequest(name="d")).token
        stream = stub.StreamEvents(broker_pb2.StreamEventsRequest(), metadata=session_md(token))
        received: list[object] = []

        def read() -> None:
            with contextlib.suppress(grpc.RpcError):  # it ends UNAVAILABLE (issue 12)
                received.extend(stream)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.2)  # let the stream reach the server before the signal

        began = time.monotonic()
        proc.popen.send_signal(sig)
        assert proc.popen.wait(timeout=10) == 0, proc.stderr()
        assert time.monotonic() - began < 5
        reader.join(timeout=5)
        assert not reader.is_alive()
        # Ended by the broker, saying why (issue 12: a stream never ends quietly), not cut off.
        assert stream.code() == grpc.StatusCode.UNAVAILABLE
        assert stream.details() == "the broker is shutting down"
    assert not sock.exists()
    assert not proc.ready.exists()
    events = [e["event"] for e in proc.logs()]
    assert "hwbkptd: stopped" in events


def test_auto_says_why(spawn: list[Proc], tmp_path: Path) -> None:
    sock = tmp_path / "hwbkpt.sock"
    proc = _start(spawn, tmp_path, "--listen", f"unix:{sock}", "--machine", "auto")
    proc.wait_ready()
    (line,) = [e for e in proc.logs() if str(e["event"]).startswith("hwbkptd: listening")]
    # Root on x86_64 Linux gets the native machine; anywhere else the sim, with the reason.
    assert line["machine"] in ("sim", "native")
    assert str(line["reason"]).startswith("auto: native ")
    proc.popen.terminate()
    assert proc.popen.wait(timeout=10) == 0


def test_loopback_tcp_port_zero(spawn: list[Proc], tmp_path: Path) -> None:
    proc = _start(
        spawn,
        tmp_path,
        "--listen",
        "tcp:127.0.0.1:0",
        "--insecure-loopback-tcp",
        "--machine",
        "sim",
    )
    (address,) = proc.wait_ready()
    host_port = address.removeprefix("tcp:")
    assert int(host_port.rpartition(":")[2]) > 0
    assert host_port in proc.stderr()  # the bound port is printed
    with grpc.insecure_channel(host_port) as channel:
        stub = broker_pb2_grpc.BrokerServiceStub(channel)
        assert stub.DescribeMachine(broker_pb2.DescribeMachineRequest()).arch == "x86_64"
    proc.popen.terminate()
    assert proc.popen.wait(timeout=10) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--listen", "tcp:0.0.0.0:50051", "--insecure-loopback-tcp"), "not a loopback"),
        (("--listen", "tcp:127.0.0.1:50051"), "--insecure-loopback-tcp"),
        (("--machine", "vax"), "unknown machine"),
        (("--machine", "sim:dr=0"), "bad machine layout"),
    ],
)
def test_refuses_to_start(
    spawn: list[Proc], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    sock = tmp_path / "s.sock"
    proc = _start(spawn, tmp_path, "--listen", f"unix:{sock}", *args)
    assert proc.popen.wait(timeout=20) == 2
    assert message in proc.stderr()
    assert "hwbkptd: error:" in proc.stderr()
    assert not proc.ready.exists()


def test_bad_option_is_a_usage_error(spawn: list[Proc], tmp_path: Path) -> None:
    proc = _start(spawn, tmp_path, "--lease", "-1")
    assert proc.popen.wait(timeout=20) == 2
    assert "--lease" in proc.stderr()


def test_second_signal_during_shutdown(spawn: list[Proc], tmp_path: Path) -> None:
    proc = _start(spawn, tmp_path, "--listen", f"unix:{tmp_path}/s.sock", "--machine", "sim")
    proc.wait_ready()
    proc.popen.send_signal(signal.SIGTERM)
    proc.popen.send_signal(signal.SIGINT)
    assert proc.popen.wait(timeout=10) == 0, proc.stderr()
