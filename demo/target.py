"""Where accesses come from. The story asks a target to write its variables; it does not
care how. ``SimTarget`` injects the access into the simulated machine; a native target (a
small C program the demo compiles) will do the same with real stores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import hwbkpt

__all__ = ["SimTarget", "Target"]


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
