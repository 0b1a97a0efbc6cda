"""The consumer side of a BPF_MAP_TYPE_RINGBUF map, memory-mapped.

Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (ours to
write, mapped read-write); page 1 the producer position (read-only); then the
data area, mapped twice in a row so a record that wraps reads as one piece.
Each record starts with an 8-byte header: ``len:u32`` (bit 31 BUSY: still
being written; bit 30 DISCARD: dropped by its producer) and ``pg_off:u32``;
records are 8-byte aligned. Positions only grow; ``pos & (size - 1)`` is
the offset in the data area. The consumer reads records up to the first busy
one, then publishes its new position so the producers can reuse the space.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable
from typing import Any

__all__ = ["RingbufReader"]

_BUSY = 1 << 31
_DISCARD = 1 << 30
_HDR = 8
_POS = struct.Struct("<Q")
_LEN = struct.Struct("<I")


class RingbufReader:
    """Reads the records of one ring buffer map of ``size`` data bytes (a power of 2)."""

    def __init__(self, map_fd: int, size: int) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"a ring buffer's size is a power of 2, not {size}")
        page = mmap.PAGESIZE
        self.fd = map_fd
        self.size = size
        self._mask = size - 1
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._prod = mmap.mmap(
            map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
        )
        self._data = memoryview(self._prod)[page:]
        self._page = page

    def pending(self) -> int:
        """Bytes written and not yet consumed (busy records included)."""
        return int(_POS.unpack_from(self._prod, 0)[0] - _POS.unpack_from(self._cons, 0)[0])

    def read(self, handle: Callable[[memoryview, int, int], None], limit: int = 1 << 30) -> int:
        """Hand every complete record to ``handle(data, offset, length)``, in order; the
        count read. ``data`` is only valid during the call (the space is reused after)."""
        cons = _POS.unpack_from(self._cons, 0)[0]
        data = self._data
        mask = self._mask
        unpack_len = _LEN.unpack_from
        n = 0
        while True:
            prod = _POS.unpack_from(self._prod, 0)[0]
            start = cons
            while cons < prod and n < limit:
                off = cons & mask
                length = unpack_len(data, off)[0]
                if length & _BUSY:
                    break
                size = length & ~(_BUSY | _DISCARD)
                cons += (size + _HDR + 7) & ~7
                if not length & _DISCARD:
                    handle(data, off + _HDR, size)
                    n += 1
            _POS.pack_into(self._cons, 0, cons)
            # A producer that wrote while we read saw the consumer behind and did not
            # wake us (the kernel wakes only a reader that has caught up): look again.
            if cons == start or n >= limit:
                return n

    def read_batch(self, body: struct.Struct) -> tuple[list[tuple[Any, ...]], int]:
        """Every complete record, in order, each unpacked by ``body`` (records of another
        length are skipped and counted): ``(records, skipped)``. Each tuple starts with the
        header's length word, then ``body``'s fields.

        The records of one producer all have one length: the consumed span is unpacked in
        one ``iter_unpack`` (a C loop), its length words checked together through a strided
        view; only a busy, discarded or odd record is looked at alone.
        """
        entry = struct.Struct("<I4x" + body.format.lstrip("<=@!>"))
        stride = entry.size
        want = body.size
        if stride & 7 or stride != want + _HDR:
            raise ValueError(f"a record of {want} bytes is not 8-byte aligned")
        cons = _POS.unpack_from(self._cons, 0)[0]
        data = self._data
        mask = self._mask
        words = stride // 4
        out: list[tuple[Any, ...]] = []
        skipped = 0
        while True:
            prod = _POS.unpack_from(self._prod, 0)[0]
            start = cons
            while cons < prod:
                off = cons & mask
                k = (prod - cons) // stride
                if k:
                    span = data[off : off + k * stride]
                    lens = span.cast("I")[::words].tolist()
                    if lens.count(want) != k:
                        k = next(i for i, n in enumerate(lens) if n != want)
                        span = span[: k * stride]
                    out.extend(entry.iter_unpack(span))
                    cons += k * stride
                    if cons >= prod:
                        break
                    off = cons & mask
                # A record that is busy, discarded, of another length, or the last bytes.
                length = _LEN.unpack_from(data, off)[0]
                if length & _BUSY:
                    break
                if length == want:
                    # Busy when the length words were read, committed since: the next
                    # pass unpacks it (skipping it lost a hit in CI, ``malformed=1``).
                    continue
                cons += ((length & ~(_BUSY | _DISCARD)) + _HDR + 7) & ~7
                if not length & _DISCARD:
                    skipped += 1
            _POS.pack_into(self._cons, 0, cons)
            # As in ``read``: a producer that wrote while we read did not wake us.
            if cons == start:
                return out, skipped

    def close(self) -> None:
        self._data.release()
        self._prod.close()
        self._cons.close()
