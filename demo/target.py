"""Where accesses come from. The story asks a target to write its variables; it does not
care how. ``SimTarget`` injects the access into the simulated machine; ``NativeTarget`` is
a small C program (``demo/target.c``) that makes real stores when told to.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import hwbkpt
from demo.daemon import DemoError

__all__ = ["SOURCE", "NativeTarget", "SimTarget", "Target", "compile_target"]

SOURCE = Path(__file__).resolve().parent / "target.c"


class Target(Protocol):
    """A process with named variables whose writes the clients watch."""

    @property
    def pid(self) -> int: ...

    @property
    def variables(self) -> Mapping[str, int]:
        """Variable name -> address (each 8 bytes)."""
        ...

    def describe(self) -> str: ...

    def write(self, name: str, value: int, size: int = 8) -> None:
        """Make the target's thread store ``value`` (``size`` bytes) into ``name``."""
        ...

    def close(self) -> None: ...


class SimTarget:
    """A simulated one-thread process; writes are injected through the sim service."""

    BASE = 0x601000
    NAMES = ("counter", "flags", "head", "total")

    def __init__(self, address: str) -> None:
        self._client = hwbkpt.Client(address)
        self._pid = self._client.sim_spawn(threads=1).pid
        self._variables = {name: self.BASE + 8 * i for i, name in enumerate(self.NAMES)}

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def variables(self) -> Mapping[str, int]:
        return self._variables

    def describe(self) -> str:
        return f"simulated process {self._pid} (one thread)"

    def write(self, name: str, value: int, size: int = 8) -> None:
        self._client.sim_touch(self._pid, self._variables[name], value=value, size=size)

    def close(self) -> None:
        self._client.close()


def compile_target(workdir: Path) -> Path:
    """``demo/target.c`` built with gcc into ``workdir``."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise DemoError("gcc is needed to build the demo's target program")
    exe = workdir / "target"
    done = subprocess.run(
        [gcc, "-O1", "-Wall", "-o", str(exe), str(SOURCE)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise DemoError(f"gcc failed on {SOURCE}:\n{done.stderr}")
    return exe


class NativeTarget:
    """A real process with four global variables; it stores a value when told to, so the
    story decides exactly when each write happens."""

    def __init__(self, exe: Path) -> None:
        self._proc = subprocess.Popen(
            [str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self._variables: dict[str, int] = {}
        while (line := self._line()) != "ready":
            name, address = line.split()
            self._variables[name] = int(address, 16)
        self._index = {name: i for i, name in enumerate(self._variables)}

    def _line(self) -> str:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise DemoError(f"the target program ended (exit {self._proc.poll()})")
        return line.strip()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def variables(self) -> Mapping[str, int]:
        return self._variables

    def describe(self) -> str:
        return f"process {self.pid} (demo/target.c, one thread)"

    def write(self, name: str, value: int, size: int = 8) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{self._index[name]} {value} {size}\n")
        self._proc.stdin.flush()
        if self._line() != "ok":
            raise DemoError("the target program did not confirm the write")

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
