"""The perf mmap ring buffer and the records written into it.

Layout (``include/uapi/linux/perf_event.h``): one header page
(``struct perf_event_mmap_page``; ``data_head``/``data_tail``/``data_offset``/
``data_size`` at bytes 1024..1055) followed by 2^n data pages. The kernel
writes records and advances ``data_head``; the reader copies
``[data_tail, data_head)`` out and then stores ``data_tail``, which tells the
kernel the space may be reused (a writable mapping: the kernel never
overwrites unread data, it counts what it could not write and reports it in a
``PERF_RECORD_LOST`` once there is room again).

Ordering: the kernel needs an acquire after the ``data_head`` load and a
release before the ``data_tail`` store. On x86_64 (total store order) plain
aligned 8-byte loads and stores give exactly that, and ctypes reads and writes
the two words with single aligned accesses. Other architectures would need real
fences here; the perf helper is only enabled on x86_64 for now.
"""

from __future__ import annotations

import ctypes
import mmap
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from hwbkptd.arch.linux.perf_event import (
    SAMPLE_ADDR,
    SAMPLE_CALLCHAIN,
    SAMPLE_CPU,
    SAMPLE_ID,
    SAMPLE_IP,
    SAMPLE_PERIOD,
    SAMPLE_TID,
    SAMPLE_TIME,
)

__all__ = [
    "MISC_COMM_EXEC",
    "PAGE_SIZE",
    "RECORD_COMM",
    "RECORD_EXIT",
    "RECORD_FORK",
    "RECORD_LOST",
    "RECORD_LOST_SAMPLES",
    "RECORD_SAMPLE",
    "RECORD_THROTTLE",
    "RECORD_UNTHROTTLE",
    "SAMPLE_IDENTIFIER",
    "SAMPLE_STREAM_ID",
    "Batch",
    "RingBuffer",
    "Sample",
    "SampleFormat",
    "TaskRecord",
    "map_ring",
]

PAGE_SIZE = mmap.PAGESIZE

SAMPLE_STREAM_ID = 1 << 9
SAMPLE_IDENTIFIER = 1 << 16

RECORD_COMM = 3
RECORD_EXIT = 4
RECORD_LOST = 2
RECORD_FORK = 7
RECORD_THROTTLE = 5
RECORD_UNTHROTTLE = 6
RECORD_SAMPLE = 9
RECORD_LOST_SAMPLES = 13

#: header.misc bit of a COMM record written by exec (attr.comm_exec).
MISC_COMM_EXEC = 1 << 13

_DATA_HEAD = 1024
_DATA_TAIL = 1032
_DATA_OFFSET = 1040
_HEADER = struct.Struct("<IHH")
_LOST = struct.Struct("<QQ")
_U64 = struct.Struct("<Q")
_TASK = struct.Struct("<IIIIQ")  # FORK/EXIT body: pid, ppid, tid, ptid, time
_COMM_IDS = struct.Struct("<II")
# Call chains interleave context markers (PERF_CONTEXT_KERNEL, ...) with addresses;
# every marker is at or above PERF_CONTEXT_MAX (-4095 as u64).
_CONTEXT_MAX = (1 << 64) - 4095


class Sample(NamedTuple):
    """One PERF_RECORD_SAMPLE; fields the sample_type lacks are 0 (cpu: -1)."""

    id: int
    ip: int
    pid: int
    tid: int
    time: int
    addr: int
    cpu: int
    callchain: tuple[int, ...] = ()


class TaskRecord(NamedTuple):
    """A PERF_RECORD_FORK, EXIT or COMM (events opened with ``task``/``comm``).

    FORK: ``tid`` was created by ``ptid``; a new thread has ``pid == ppid``.
    COMM: ``ppid``/``ptid`` are 0 and ``exec`` says whether exec wrote it.
    ``time`` is the record's own time (FORK/EXIT) or the sample_id trailer's
    (COMM; 0 without ``sample_id_all``); ``cpu`` is -1 when the trailer lacks it.
    """

    kind: int
    pid: int
    ppid: int
    tid: int
    ptid: int
    time: int
    comm: str = ""
    exec: bool = False
    cpu: int = -1


@dataclass(slots=True)
class Batch:
    """What one read of a ring held."""

    samples: list[Sample] = field(default_factory=list)
    #: FORK/EXIT/COMM records, in ring order (only when the format parses them).
    tasks: list[TaskRecord] = field(default_factory=list)
    #: Records the kernel could not write (PERF_RECORD_LOST and LOST_SAMPLES).
    lost: int = 0
    throttled: int = 0
    #: Records of other types, skipped.
    other: int = 0
    #: A record with an impossible size ended parsing early.
    malformed: bool = False


# Fields of the fixed part of a sample body, in the kernel's order.
_FIXED_FIELDS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (SAMPLE_IDENTIFIER, "Q", ("id",)),
    (SAMPLE_IP, "Q", ("ip",)),
    (SAMPLE_TID, "II", ("pid", "tid")),
    (SAMPLE_TIME, "Q", ("time",)),
    (SAMPLE_ADDR, "Q", ("addr",)),
    (SAMPLE_ID, "Q", ("id",)),
    (SAMPLE_STREAM_ID, "Q", ("",)),
    (SAMPLE_CPU, "II", ("cpu", "")),
    (SAMPLE_PERIOD, "Q", ("",)),
)
_DEFAULTS = (0, 0, 0, 0, 0, 0, -1)
_SUPPORTED = SAMPLE_CALLCHAIN
for _bit, _code, _names in _FIXED_FIELDS:
    _SUPPORTED |= _bit


class SampleFormat:
    """Parses records of events that share one ``sample_type``.

    Events whose output is redirected into one ring must agree on it; with
    ``SAMPLE_IDENTIFIER`` (or ``SAMPLE_ID``) each sample names its event.
    """

    def __init__(
        self, sample_type: int, *, tasks: bool = False, sample_id_all: bool = False
    ) -> None:
        """``tasks``: parse FORK/EXIT/COMM records into ``Batch.tasks`` (else they count as
        ``other``); ``sample_id_all``: the events append a sample_id trailer to them."""
        unsupported = sample_type & ~_SUPPORTED
        if unsupported:
            raise ValueError(f"sample_type bits {unsupported:#x} are not supported")
        self.sample_type = sample_type
        codes = "<"
        names: list[str] = []
        for bit, code, field_names in _FIXED_FIELDS:
            if sample_type & bit and not (bit == SAMPLE_ID and sample_type & SAMPLE_IDENTIFIER):
                codes += code
                names.extend(field_names)
            elif bit == SAMPLE_ID and sample_type & bit:
                codes += code  # both set: the kernel writes the id twice
                names.append("")
        self._fixed = struct.Struct(codes)
        index = {name: i for i, name in enumerate(names) if name}
        self._pick = tuple(index.get(name, -1) for name in Sample._fields[:7])
        # The usual layout (identifier, ip, pid, tid, time, addr, cpu, reserved) maps 1:1.
        self._standard = self._pick == tuple(range(7)) and len(names) == 8
        self._callchain = bool(sample_type & SAMPLE_CALLCHAIN)
        self._tasks = tasks
        self._trailer = _trailer_layout(sample_type) if sample_id_all else None

    def parse_sample(self, data: bytes, pos: int, end: int) -> Sample:
        """The body of one sample record at ``data[pos:end]``."""
        values = self._fixed.unpack_from(data, pos)
        chain: tuple[int, ...] = ()
        if self._callchain:
            at = pos + self._fixed.size
            (nr,) = _U64.unpack_from(data, at)
            if at + 8 + 8 * nr > end:
                raise ValueError("call chain runs past its record")
            raw = struct.unpack_from(f"<{nr}Q", data, at + 8)
            chain = tuple(a for a in raw if a < _CONTEXT_MAX)
        if self._standard:
            return Sample._make((*values[:7], chain))
        picked = [values[i] if i >= 0 else d for i, d in zip(self._pick, _DEFAULTS, strict=True)]
        return Sample._make((*picked, chain))

    def parse(self, data: bytes) -> Batch:
        """Every complete record in ``data`` (a copy of the ring's unread bytes)."""
        batch = Batch()
        pos = 0
        n = len(data)
        fixed = self._fixed.size
        while pos + _HEADER.size <= n:
            rtype, misc, size = _HEADER.unpack_from(data, pos)
            if size < _HEADER.size or pos + size > n:
                batch.malformed = True
                break
            body = pos + _HEADER.size
            if rtype == RECORD_SAMPLE:
                if size - _HEADER.size < fixed:
                    batch.malformed = True
                    break
                try:
                    batch.samples.append(self.parse_sample(data, body, pos + size))
                except (ValueError, struct.error):
                    batch.malformed = True
                    break
            elif rtype == RECORD_LOST and size >= _HEADER.size + _LOST.size:
                batch.lost += _LOST.unpack_from(data, body)[1]
            elif rtype == RECORD_LOST_SAMPLES and size >= _HEADER.size + _U64.size:
                batch.lost += _U64.unpack_from(data, body)[0]
            elif rtype == RECORD_THROTTLE:
                batch.throttled += 1
            elif self._tasks and rtype in _TASK_KINDS:
                task = self._parse_task(rtype, misc, data, body, pos + size)
                if task is None:
                    batch.malformed = True
                    break
                batch.tasks.append(task)
            else:
                batch.other += 1
            pos += size
        return batch

    def _parse_task(
        self, rtype: int, misc: int, data: bytes, body: int, end: int
    ) -> TaskRecord | None:
        time, cpu = 0, -1
        trailer = self._trailer
        if trailer is not None:
            layout, time_at, cpu_at = trailer
            if end - body < layout.size:
                return None
            fields = layout.unpack_from(data, end - layout.size)
            time = fields[time_at] if time_at >= 0 else 0
            cpu = fields[cpu_at] if cpu_at >= 0 else -1
            end -= layout.size
        if rtype == RECORD_COMM:
            if end - body < _COMM_IDS.size:
                return None
            pid, tid = _COMM_IDS.unpack_from(data, body)
            raw = data[body + _COMM_IDS.size : end].split(b"\0", 1)[0]
            comm = raw.decode("utf-8", "replace")
            return TaskRecord(rtype, pid, 0, tid, 0, time, comm, bool(misc & MISC_COMM_EXEC), cpu)
        if end - body < _TASK.size:
            return None
        pid, ppid, tid, ptid, own_time = _TASK.unpack_from(data, body)
        return TaskRecord(rtype, pid, ppid, tid, ptid, own_time, cpu=cpu)


_TASK_KINDS = frozenset((RECORD_FORK, RECORD_EXIT, RECORD_COMM))


def _trailer_layout(sample_type: int) -> tuple[struct.Struct, int, int]:
    """The sample_id trailer (``sample_id_all``) and where its time and cpu are."""
    codes = "<"
    n = 0
    time_at = cpu_at = -1
    for bit, code in (
        (SAMPLE_TID, "II"),
        (SAMPLE_TIME, "Q"),
        (SAMPLE_ID, "Q"),
        (SAMPLE_STREAM_ID, "Q"),
        (SAMPLE_CPU, "II"),
        (SAMPLE_IDENTIFIER, "Q"),
    ):
        if sample_type & bit:
            if bit == SAMPLE_TIME:
                time_at = n
            elif bit == SAMPLE_CPU:
                cpu_at = n
            codes += code
            n += len(code)
    return struct.Struct(codes), time_at, cpu_at


class RingBuffer:
    """Reader side of one ring: copies out unread bytes and frees them for the kernel.

    ``buf`` is the whole mapping (header page and data pages); a ``bytearray``
    with the same layout works too, which is how the pure tests build rings.
    """

    def __init__(self, buf: mmap.mmap | bytearray) -> None:
        self._buf = buf
        self._head: ctypes.c_uint64 | None = ctypes.c_uint64.from_buffer(buf, _DATA_HEAD)
        self._tail: ctypes.c_uint64 | None = ctypes.c_uint64.from_buffer(buf, _DATA_TAIL)
        offset, size = struct.unpack_from("<QQ", buf, _DATA_OFFSET)
        if size == 0:  # kernels before 4.1 leave these 0: data starts at the second page
            offset, size = PAGE_SIZE, len(buf) - PAGE_SIZE
        if size <= 0 or size & (size - 1) or offset + size > len(buf):
            raise ValueError(f"bad ring layout: data_offset={offset} data_size={size}")
        self.data_offset = offset
        self.data_size = size
        #: Reads that found more unread bytes than the ring holds (impossible unless corrupt).
        self.overruns = 0

    def pending(self) -> int:
        """Unread bytes."""
        if self._head is None or self._tail is None:
            return 0
        return int(self._head.value - self._tail.value)

    def read(self) -> bytes:
        """Copy out everything unread and hand the space back to the kernel."""
        if self._head is None or self._tail is None:
            return b""
        head = self._head.value
        tail = self._tail.value
        n = head - tail
        if n == 0:
            return b""
        size = self.data_size
        if n < 0 or n > size:
            self.overruns += 1
            self._tail.value = head
            return b""
        offset = self.data_offset
        start = tail & (size - 1)
        first = min(n, size - start)
        buf = self._buf
        data = buf[offset + start : offset + start + first]
        if n > first:  # the unread bytes wrap around the end of the data area
            data += buf[offset : offset + n - first]
        # Only now may the kernel reuse the space: the copy above is complete.
        self._tail.value = head
        return bytes(data)

    def close(self) -> None:
        """Drop the views into the mapping (and unmap it when it is an mmap)."""
        self._head = None
        self._tail = None
        if isinstance(self._buf, mmap.mmap):
            self._buf.close()


def map_ring(fd: int, data_pages: int) -> RingBuffer:
    """Map an event's ring: one header page and ``data_pages`` (a power of two) data pages."""
    if data_pages <= 0 or data_pages & (data_pages - 1):
        raise ValueError(f"data_pages must be a power of two, not {data_pages}")
    buf = mmap.mmap(
        fd, (1 + data_pages) * PAGE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
    )
    try:
        return RingBuffer(buf)
    except BaseException:
        buf.close()
        raise
