"""The port every arch implements: validation and splitting of a region into chunks.

The core asks an ``Arch`` (``hwbkptd.arch.x86_64``, ``hwbkptd.arch.arm64``) and
never imports one: arch code imports the core, not the reverse. Arch code is
pure (no system calls); the register encoders live next to each arch and are
used by the mechanisms that write registers directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from hwbkptd.core.model import Access, Chunk

__all__ = ["Arch"]


class Arch(Protocol):
    #: "x86_64" or "arm64".
    name: str
    #: The longest region one request may watch.
    max_region_length: int
    #: True where a read-only watch is armed as read/write and writes are filtered out.
    read_emulated: bool
    #: Instruction length used when an exec request leaves length at 0.
    exec_length: int

    def pool_for(self, access: Access) -> str:
        """The pool that serves this access kind."""

    def split(
        self,
        address: int,
        length: int,
        access: Access,
        *,
        kernel: bool,
        pools: Mapping[str, int],
    ) -> tuple[Chunk, ...]:
        """Validate and split a region into aligned chunks.

        Raises ``InvalidArgument`` naming ``spec.address``, ``spec.length`` or
        ``spec.access`` with the reason: misaligned or wrong exec length, zero or
        oversized length, an address outside user (``kernel=False``) or kernel
        space, a non-canonical address, or a region needing more chunks than the
        pool has slots ("unsplittable").
        """
