"""Records the ring refused, kept aside in an array map until the reader takes them.

Linux 6.18 now and then refuses a ``bpf_ringbuf_output`` with the ring nearly
empty, sometimes for a millisecond at a time (docs/decisions.md, "Ring writes
refused while the ring is empty"), and a full ring refuses every write. Rather
than lose such a record, the hit program writes it into the ``spill`` map: an
array of ``SPILL_SLOTS`` entries used as a ring, plus one entry at index
``SPILL_SLOTS`` holding the positions (``head``: entries handed out, written by
the program with an atomic add; ``tail``: entries taken, written by the reader).

An entry is ``seq:u64`` then the record. The program copies the record, then
exchanges ``seq`` to the entry's position + 1 (an atomic exchange orders it after
the copy on every architecture); the reader takes entries in order while their
``seq`` says they are complete. The program hands out an entry only while fewer
than half the slots are untaken, so producers racing on other CPUs cannot lap
the reader; past that the record counts as dropped, as before.

The map is created ``BPF_F_MMAPABLE``: the reader reads the positions and entries
from shared memory, no system call per read.
"""

from __future__ import annotations

import mmap
import struct
from typing import Any

__all__ = ["SPILL_SEQ", "SPILL_SLOTS", "SpillReader"]

#: Entries of the spill ring (a power of 2).
SPILL_SLOTS = 256
#: Bytes of an entry before its record (the positions entry uses its first 16 bytes).
SPILL_SEQ = 8
_U64 = struct.Struct("<Q")


class SpillReader:
    """Takes the complete entries of a spill map (or of any buffer laid out like one)."""

    def __init__(self, buffer: Any, record_size: int, slots: int = SPILL_SLOTS) -> None:
        if slots <= 0 or slots & (slots - 1):
            raise ValueError(f"the spill ring's size is a power of 2, not {slots}")
        if record_size & 7:
            raise ValueError(f"a record of {record_size} bytes is not 8-byte aligned")
        self._buf = buffer
        self._mask = slots - 1
        self._entry = SPILL_SEQ + record_size
        self._head_at = slots * self._entry
        self._tail = _U64.unpack_from(buffer, self._head_at + 8)[0]

    @classmethod
    def of_map(cls, map_fd: int, record_size: int, slots: int = SPILL_SLOTS) -> SpillReader:
        size = (slots + 1) * (SPILL_SEQ + record_size)
        length = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        return cls(mmap.mmap(map_fd, length, mmap.MAP_SHARED), record_size, slots)

    def pending(self) -> int:
        """Entries handed out and not yet taken (some may still be being written)."""
        return int(_U64.unpack_from(self._buf, self._head_at)[0] - self._tail)

    def read(self, body: struct.Struct) -> list[tuple[Any, ...]]:
        """The complete entries in order, each as ``RingbufReader.read_batch`` gives a
        record: the record's length, then ``body``'s fields; their slots are freed."""
        buf, tail = self._buf, self._tail
        head = _U64.unpack_from(buf, self._head_at)[0]
        out: list[tuple[Any, ...]] = []
        while tail < head:
            at = (tail & self._mask) * self._entry
            if _U64.unpack_from(buf, at)[0] != tail + 1:
                break  # handed out, still being copied: the next read takes it
            out.append((body.size, *body.unpack_from(buf, at + SPILL_SEQ)))
            tail += 1
        if out:
            self._tail = tail
            _U64.pack_into(buf, self._head_at + 8, tail)
        return out

    def close(self) -> None:
        if isinstance(self._buf, mmap.mmap):
            self._buf.close()
