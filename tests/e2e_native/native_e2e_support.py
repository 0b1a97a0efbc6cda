"""Helpers for the native end-to-end tests: a real ``hwbkptd --machine native`` on a Unix
socket, real C targets, and reading /proc about them.

The daemon and the generic client helpers are the ones of tests/e2e (``e2e_support``).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import hwbkpt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from e2e_support import (
    HWBKPT,
    REPO,
    Daemon,
    WatchProcess,
    expect_event,
    quiet_events,
    start_daemon,
)

__all__ = [
    "ARMINGS",
    "HWBKPT",
    "REPO",
    "Daemon",
    "Target",
    "WatchProcess",
    "expect_event",
    "hits_of",
    "native_daemon",
    "native_reason",
    "quiet_events",
    "tracer_pid",
    "until",
]

ARMINGS = ("perf", "debugreg")


def native_reason() -> str:
    """Why the native machine cannot be tested here ("" when it can)."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"needs Linux x86_64, this is {platform.system()} {platform.machine()}"
    if os.geteuid() != 0:
        return "needs root: the broker traces the targets with ptrace"
    for tool in ("gcc", "nm"):
        if shutil.which(tool) is None:
            return f"needs {tool} to build the C targets"
    return ""


def native_daemon(workdir: Path, arming: str = "auto", *extra: str) -> Daemon:
    return start_daemon(workdir, machine="native", extra=("--arming", arming, *extra))


def _status_field(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def tracer_pid(pid: int) -> int:
    """The process tracing ``pid`` (0: none). TracerPid names the tracing *thread*."""
    tracer = _status_field(pid, "TracerPid")
    return _status_field(tracer, "Tgid") if tracer else 0


def until(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class Target:
    """A C target started by the test (not by the broker): its first line is an address."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.address = int(self.readline(), 16)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"target {self.proc.args} ended: {self.proc.poll()}")
        return line.strip()

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def write(self, index: int, value: int) -> None:
        """vars.c: store ``value`` into vars[index] and wait for the store to be done."""
        self.send(f"{index} {value}\n")
        assert self.readline() == "ok"

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        """Close stdin, wait; (exit status, the rest of stdout)."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        rest = self.proc.stdout.read()
        return self.proc.wait(timeout), rest

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def hits_of(events: list[hwbkpt.Event], breakpoint_id: int = 0) -> list[hwbkpt.Hit]:
    return [
        e.payload
        for e in events
        if isinstance(e.payload, hwbkpt.Hit) and breakpoint_id in (0, e.breakpoint_id)
    ]
