"""Running the Node.js parts of the tests (issue 15): ``node`` and the packages ``npm ci``
installs from package-lock.json (``make setup``). Missing pieces fail with what to do;
they are not a reason to skip."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

__all__ = ["REPO", "NodeScript", "node_or_fail"]

REPO = Path(__file__).resolve().parents[1]


def node_or_fail(*packages: str) -> str:
    """The ``node`` command; fails the test when node or an npm package is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: install Node.js >= 18 and npm, then `make setup`")
    for package in packages:
        if not (REPO / "node_modules" / package / "package.json").exists():
            pytest.fail(
                f"npm package {package} is missing: run `make setup` "
                "(it runs `npm ci` from package-lock.json)"
            )
    return node


class NodeScript:
    """A node script whose stdout lines are JSON objects with a "step" (others are logs),
    and whose stdin takes one word per line."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
            cwd=REPO,
        )
        self.log: list[str] = []
        self._steps: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)
            if line.startswith('{"step"'):
                self._steps.put(json.loads(line))
        self._steps.put(None)

    def expect(self, step: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next step; it must be ``step`` (a "failed" step carries the script's error)."""
        deadline = time.monotonic() + timeout
        try:
            got = self._steps.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            got = None
        if got is None or got.get("step") != step:
            self.kill()
            raise AssertionError(f"expected step {step!r}, got {got}; output:\n{''.join(self.log)}")
        return got

    def send(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = 30.0) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"node still running; output:\n{''.join(self.log)}") from None
        self._reader.join(timeout)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
