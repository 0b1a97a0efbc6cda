"""Client processes of the demo, read as JSON lines."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from demo.daemon import DemoError, tool

__all__ = ["ClientProcess", "agent", "cli_watch"]

Record = dict[str, Any]
_REPO = Path(__file__).resolve().parent.parent


class ClientProcess:
    """A client running in its own process; its stdout is one JSON object per line."""

    def __init__(self, label: str, argv: list[str]) -> None:
        self.label = label
        self.proc = subprocess.Popen(
            argv,
            cwd=_REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._records: queue.Queue[Record | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self._records.put(json.loads(line))
        self._records.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self._stderr.extend(self.proc.stderr)

    def expect(self, timeout: float = 10.0, **fields: Any) -> Record:
        """The next record with these fields; records before it are passed over."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                rec = self._records.get(timeout=remaining)
            except queue.Empty:
                break
            if rec is None:
                self._records.put(None)
                break
            if all(rec.get(k) == v for k, v in fields.items()):
                return rec
        raise DemoError(f"{self.label}: no {fields} within {timeout}s; {''.join(self._stderr)}")

    def quiet(self, seconds: float, **fields: Any) -> list[Record]:
        """Records with these fields that arrive within ``seconds``."""
        got: list[Record] = []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                rec = self._records.get(timeout=remaining)
            except queue.Empty:
                break
            if rec is None:
                self._records.put(None)
                break
            if all(rec.get(k) == v for k, v in fields.items()):
                got.append(rec)
        return got

    def stop(self, timeout: float = 10.0) -> int:
        """Ask the client to finish (SIGINT, as Ctrl-C would) and wait for it; its status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def stop_expecting(self, expected: int) -> None:
        """``stop``, then DemoError unless the client exited with ``expected`` (its
        status and what it printed on stderr say why)."""
        status = self.stop()
        if status != expected:
            self._err_reader.join(2.0)  # the rest of its stderr, now that it has exited
            raise DemoError(
                f"the {self.label} client did not exit cleanly (status {status}, "
                f"expected {expected}); its stderr: {''.join(self._stderr) or '(empty)'}"
            )


def agent(label: str, server: str, pid: int, addresses: list[int], priority: str) -> ClientProcess:
    """A library client (``demo.agent``) holding several watches in one session."""
    argv = [sys.executable, "-m", "demo.agent", "--server", server, "--name", label]
    argv += ["--pid", str(pid), "--priority", priority, *map(hex, addresses)]
    return ClientProcess(label, argv)


def cli_watch(label: str, server: str, *args: str) -> ClientProcess:
    """``hwbkpt --json watch ...`` with the session named ``label``."""
    argv = [tool("hwbkpt"), "--server", server, "--json", "watch", "--name", label, *args]
    return ClientProcess(label, argv)
