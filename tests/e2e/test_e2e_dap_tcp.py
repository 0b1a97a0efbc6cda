"""Issue 15, item 1: ``hwbkpt dap --port`` serves DAP on TCP, one adapter per connection
(hwbkpt.dap._serve), against a simulated broker: initialize announces data breakpoints, and
a request that needs a process before attach is refused with a message."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import HWBKPT, Daemon, start_daemon

from hwbkpt.dap import read_message

pytestmark = pytest.mark.e2e


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(tmp_path)
    yield d
    assert d.stop() == 0, d.log()


def request(conn: socket.socket, seq: int, command: str, **arguments: object) -> None:
    body = json.dumps(
        {"seq": seq, "type": "request", "command": command, "arguments": arguments}
    ).encode()
    conn.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)


def test_item1_dap_over_tcp_two_connections(daemon: Daemon) -> None:
    proc = subprocess.Popen(
        [str(HWBKPT), "--server", daemon.address, "dap", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert match, line
        port = int(match.group(1))
        for _ in range(2):  # each connection is its own adapter
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                reader = conn.makefile("rb")
                request(conn, 1, "initialize", adapterID="hwbkpt")
                answer = read_message(reader)
                assert answer is not None
                assert answer["success"] is True
                assert answer["body"]["supportsDataBreakpoints"] is True
                assert answer["body"]["supportsDataBreakpointBytes"] is True
                initialized = read_message(reader)
                assert initialized is not None
                assert initialized["event"] == "initialized"
                request(conn, 2, "setDataBreakpoints", breakpoints=[])
                refused = read_message(reader)
                assert refused is not None
                assert refused["success"] is False
                assert refused["message"] == "attach or launch first"
                request(conn, 3, "attach", pid=0)
                bad = read_message(reader)
                assert bad is not None
                assert bad["message"] == "pid: give the process id to attach to"
                request(conn, 4, "disconnect")
                bye = read_message(reader)
                assert bye is not None
                assert bye["success"] is True
                reader.close()
    finally:
        proc.kill()
        proc.wait(5)
