"""The simulated machine's memory: one sparse 64-bit address space per process and
one shared kernel space above the arch's kernel start.

Split from ``sim`` because memory is one job (where a byte lives, what an
unwritten one reads) and the machine (threads, slot tables, traps) another.
"""

from __future__ import annotations

from hwbkptd.core.errors import InvalidArgument, NotFound

__all__ = ["SimMemory", "SparseMemory", "check_region"]

_PAGE = 4096
_ADDRESS_LIMIT = 1 << 64


def check_region(address: int, length: int) -> None:
    if address < 0 or address + length > _ADDRESS_LIMIT:
        raise InvalidArgument("address", f"region {address:#x}+{length} is outside 64 bits")


class SparseMemory:
    """A 64-bit address space of 4 KiB pages created on first write; unwritten bytes read 0."""

    def __init__(self) -> None:
        self._pages: dict[int, bytearray] = {}

    def read(self, address: int, length: int) -> bytes:
        out = bytearray()
        at, end = address, address + length
        while at < end:
            page, offset = divmod(at, _PAGE)
            take = min(_PAGE - offset, end - at)
            data = self._pages.get(page)
            out += data[offset : offset + take] if data is not None else bytes(take)
            at += take
        return bytes(out)

    def write(self, address: int, data: bytes) -> None:
        at, rest = address, memoryview(data)
        while rest:
            page, offset = divmod(at, _PAGE)
            take = min(_PAGE - offset, len(rest))
            buf = self._pages.get(page)
            if buf is None:
                buf = self._pages[page] = bytearray(_PAGE)
            buf[offset : offset + take] = rest[:take]
            rest = rest[take:]
            at += take


class SimMemory:
    """Per-process address spaces below ``kernel_start``, one kernel space above it."""

    def __init__(self, kernel_start: int) -> None:
        self._kernel_start = kernel_start
        self._spaces: dict[int, SparseMemory] = {}
        self._kernel = SparseMemory()

    def add_process(self, pid: int) -> None:
        """A fresh address space (a new or exec'd process)."""
        self._spaces[pid] = SparseMemory()

    def drop_process(self, pid: int) -> None:
        self._spaces.pop(pid, None)

    def read(self, pid: int, address: int, length: int) -> bytes:
        if length <= 0:
            return b""
        check_region(address, length)
        return self._space(pid, address).read(address, length)

    def write(self, pid: int, address: int, data: bytes) -> None:
        check_region(address, len(data))
        self._space(pid, address).write(address, data)

    def _space(self, pid: int, address: int) -> SparseMemory:
        if address >= self._kernel_start:
            return self._kernel
        memory = self._spaces.get(pid)
        if memory is None:
            raise NotFound("pid", f"no process {pid}")
        return memory
