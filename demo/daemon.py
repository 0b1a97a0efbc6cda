"""Start and stop the broker the demo talks to."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["Broker", "DemoError", "tool"]


class DemoError(Exception):
    """Something the demo expected did not happen; the message says what."""


def tool(name: str) -> str:
    """A command installed next to this interpreter (``.venv/bin/hwbkptd``)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise DemoError(f"{path} not found: run `make setup` first")
    return str(path)


class Broker:
    """``hwbkptd`` on a Unix socket in ``workdir``; ``stop()`` sends SIGTERM."""

    def __init__(self, workdir: Path, machine: str = "sim", arming: str = "auto") -> None:
        self.workdir = workdir
        self.machine = machine
        self.arming = arming
        self.socket = workdir / "hwbkpt.sock"
        self.address = f"unix:{self.socket}"
        self.log_path = workdir / "hwbkptd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        ready = self.workdir / "ready"
        argv = [
            tool("hwbkptd"),
            "--listen",
            self.address,
            "--machine",
            self.machine,
            "--arming",
            self.arming,
            "--ready-file",
            str(ready),
            "--log-format",
            "json",
        ]
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise DemoError(f"hwbkptd did not start:\n{self.log_tail()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and the exit status (the broker promises 0)."""
        if self._proc is None:
            return 0
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        return self._proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
