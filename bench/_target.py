"""A target program under measurement: started, held until a watch is armed, then let go.

The targets (bench/target_loop.c, bench/clock_target.c) print the watched variable's
address on their first line and wait for one byte on stdin before they start writing.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench._support import pinned

__all__ = ["Target"]


class Target:
    """A held target process; ``address`` is its watched variable."""

    def __init__(self, program: Path, *args: object, cpu: int | None = None) -> None:
        self.argv: Sequence[str] = [str(program), *(str(a) for a in args)]
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=pinned(cpu),
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("0x"):
            self.kill()
            raise RuntimeError(f"{program.name} did not print its address (got {line!r})")
        self.address = int(line, 16)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def go(self) -> None:
        """Let the target start writing."""
        assert self._proc.stdin is not None
        self._proc.stdin.write("g")
        self._proc.stdin.flush()

    def finish(self, timeout: float = 120.0) -> str:
        """Wait for the target's exit; its remaining output (raises on a failed exit)."""
        out, _ = self._proc.communicate(timeout=timeout)
        if self._proc.returncode != 0:
            raise RuntimeError(f"{self.argv[0]} exited with status {self._proc.returncode}")
        return out

    def finish_json(self, timeout: float = 120.0) -> dict[str, Any]:
        """The target's last output line, parsed as JSON (clock_target's report)."""
        lines = [ln for ln in self.finish(timeout).splitlines() if ln.strip()]
        if not lines:
            raise RuntimeError(f"{self.argv[0]} printed no report")
        report: dict[str, Any] = json.loads(lines[-1])
        return report

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()
