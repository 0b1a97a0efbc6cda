"""The broker under test: ``hwbkptd`` started as its own process on a Unix socket.

Benchmarks read its CPU time and resident memory from ``/proc/PID``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from bench._support import pinned, workdir

__all__ = ["Broker", "BrokerUnavailable", "cpu_seconds", "rss_kib"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


class BrokerUnavailable(RuntimeError):
    """hwbkptd would not start with the asked machine; the message is its own error."""


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (seconds), from /proc/PID/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _hwbkptd() -> str:
    path = Path(sys.executable).parent / "hwbkptd"
    if not path.exists():
        raise BrokerUnavailable(f"{path} not found: run `make setup` first")
    return str(path)


class Broker:
    """``hwbkptd --machine MACHINE [--arming A]`` on a fresh Unix socket; a context manager."""

    _count = 0

    def __init__(
        self, machine: str, arming: str = "auto", *extra: str, cpu: int | None = None
    ) -> None:
        Broker._count += 1
        self.dir = workdir() / f"broker-{Broker._count}"
        self.dir.mkdir()
        self.machine = machine
        self.arming = arming
        self.address = f"unix:{self.dir / 'hwbkpt.sock'}"
        self.log_path = self.dir / "hwbkptd.log"
        self._extra = extra
        #: Run every broker thread on this CPU only (None: wherever the kernel likes).
        self.cpu = cpu
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "broker not started"
        return self._proc.pid

    def start(self, timeout: float = 20.0) -> Self:
        ready = self.dir / "ready"
        argv = [
            _hwbkptd(),
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
            "--log-level",
            "warning",
            # The hit benches buffer every hit of a run (hit_buffer n + 1024), above the
            # default cap of 65,536 (issue 12); the memory budget still applies.
            "--max-hit-buffer",
            "1000000",
            *self._extra,
        ]
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pinned(self.cpu)
            )
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self._proc.poll() is not None:
                raise BrokerUnavailable(self._why())
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerUnavailable(f"hwbkptd did not start within {timeout:.0f} s")
            time.sleep(0.02)
        return self

    def _why(self) -> str:
        lines = [ln for ln in self.log_tail().splitlines() if ln.strip()]
        return lines[-1] if lines else f"hwbkptd exited with status {self.returncode()}"

    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def stop(self, timeout: float = 10.0) -> int:
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
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
