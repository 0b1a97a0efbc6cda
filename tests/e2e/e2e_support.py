"""End-to-end helpers: a real ``hwbkptd`` on a Unix socket, client processes read as JSON
lines, and waiting for library events. The fixtures that use them are in ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import hwbkpt

__all__ = [
    "HWBKPT",
    "HWBKPTD",
    "REPO",
    "Daemon",
    "WatchProcess",
    "expect_event",
    "quiet_events",
    "start_daemon",
]

BIN = Path(sys.executable).parent
HWBKPTD = BIN / "hwbkptd"
HWBKPT = BIN / "hwbkpt"
REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 15.0

Record = dict[str, Any]


class WatchProcess:
    """A ``hwbkpt --json watch`` (or any JSON-lines) client process, read line by line."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        #: Every record read so far, in order.
        self.seen: list[Record] = []
        self.stderr: list[str] = []
        self._queue: queue.Queue[Record | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read_out, daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                rec = json.loads(line)
                self.seen.append(rec)
                self._queue.put(rec)
        self._queue.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr.extend(self.proc.stderr)

    def _describe(self) -> str:
        return (
            f"{' '.join(self.argv[1:])}\n  records: {self.seen}\n"
            f"  stderr: {''.join(self.stderr)}\n  exit: {self.proc.poll()}"
        )

    def expect(self, timeout: float = 10.0, **fields: Any) -> Record:
        """The next record whose fields equal ``fields`` (earlier ones are skipped)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                rec = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if rec is None:
                self._queue.put(None)
                break
            if all(rec.get(k) == v for k, v in fields.items()):
                return rec
        raise AssertionError(f"no record with {fields} within {timeout}s from {self._describe()}")

    def quiet(self, seconds: float = 0.4) -> list[Record]:
        """Records that arrive within ``seconds`` (to show that nothing else came)."""
        got: list[Record] = []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                rec = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if rec is None:
                self._queue.put(None)
                break
            got.append(rec)
        return got

    def interrupt(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        """Ctrl-C (or SIGTERM) and wait for the exit status."""
        self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 10.0) -> int:
        """The exit status, once everything the process wrote is in ``seen``/``stderr``."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"still running after {timeout}s: {self._describe()}") from None
        # The readers may still be on the last lines when the exit is seen; the pipes end
        # with the process.
        for reader in self._readers:
            reader.join(timeout)
        return rc

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        self.proc.kill()
        self.proc.wait(5)

    def count(self, **fields: Any) -> int:
        return sum(all(r.get(k) == v for k, v in fields.items()) for r in self.seen)


@dataclass
class Daemon:
    address: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    clients: list[WatchProcess] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``hwbkpt --server ADDR ARGS`` to completion. One that hangs is made to print
        every thread's stack (faulthandler on SIGABRT) into the failure, then killed."""
        argv = [str(HWBKPT), "--server", self.address, *args]
        env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        ) as proc:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)
                try:
                    out, err = proc.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, err = proc.communicate()
                raise AssertionError(
                    f"hwbkpt {' '.join(args)} did not end within {timeout:.0f} s; "
                    f"stdout:\n{out}\nstderr (with its threads' stacks):\n{err}"
                ) from None
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def cli_json(self, *args: str) -> list[Record]:
        """``hwbkpt --json ...``; it must exit 0; one record per line."""
        done = self.cli("--json", *args)
        assert done.returncode == 0, f"hwbkpt {' '.join(args)}: {done.stderr}"
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def watch(self, *args: str) -> WatchProcess:
        """Start ``hwbkpt --json watch ARGS`` and wait for its first state line."""
        w = WatchProcess([str(HWBKPT), "--server", self.address, "--json", "watch", *args])
        self.clients.append(w)
        w.expect(event="state", seq=0)
        return w

    def client(self) -> hwbkpt.Client:
        return hwbkpt.Client(self.address)

    def spawn(self, threads: int = 1) -> tuple[int, list[int]]:
        rec = self.cli_json("sim", "spawn", "--threads", str(threads))[0]
        return rec["pid"], rec["tids"]

    def stop(self) -> int:
        for w in self.clients:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return -9
        return self.proc.returncode


def start_daemon(
    workdir: Path, *, machine: str = "sim", lease: float | None = None, extra: tuple[str, ...] = ()
) -> Daemon:
    sock = workdir / "hwbkpt.sock"
    ready = workdir / "ready"
    log_path = workdir / "hwbkptd.log"
    argv = [
        str(HWBKPTD),
        "--listen",
        f"unix:{sock}",
        "--machine",
        machine,
        "--ready-file",
        str(ready),
        "--log-format",
        "json",
        *(("--lease", str(lease)) if lease is not None else ()),
        *extra,
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    daemon = Daemon(address=f"unix:{sock}", proc=proc, log_path=log_path)
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            daemon.stop()
            pytest.fail(f"hwbkptd did not become ready ({' '.join(argv)}):\n{daemon.log()}")
        time.sleep(0.02)
    return daemon


# --- library-side helpers --------------------------------------------------------------
def expect_event(
    session: hwbkpt.Session,
    kind: str,
    timeout: float = 10.0,
    where: Callable[[hwbkpt.Event], bool] | None = None,
    seen: list[hwbkpt.Event] | None = None,
) -> hwbkpt.Event:
    """The next event of ``kind`` (matching ``where``); events passed over go to ``seen``."""
    deadline = time.monotonic() + timeout
    passed: list[hwbkpt.Event] = []
    while (remaining := deadline - time.monotonic()) > 0:
        ev = session.next_event(remaining)
        if ev is None:
            break
        if seen is not None:
            seen.append(ev)
        if ev.kind == kind and (where is None or where(ev)):
            return ev
        passed.append(ev)
    raise AssertionError(f"no {kind} event within {timeout}s; got {passed}")


def quiet_events(session: hwbkpt.Session, seconds: float = 0.4) -> list[hwbkpt.Event]:
    """Events that arrive within ``seconds``."""
    got: list[hwbkpt.Event] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        ev = session.next_event(remaining)
        if ev is None:
            break
        got.append(ev)
    return got
