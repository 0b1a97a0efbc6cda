"""HitPipe: the hit program, its maps and its ring, and what arms events with them.

Slot keys index the ``conf``/``state`` arrays; a key is handed out per armed slot
and taken back when the slot's last event closes. ``attach`` links the program
to one perf breakpoint event with the event's id as the link's cookie, and maps
that id to the slot key; an event opened with ``inherit`` passes program and
cookie to its copies in later threads. Closing the link descriptor (and the
event) detaches the program.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from hwbkptd.arch.bpf import syscall as bpf
from hwbkptd.arch.bpf.hitprog import (
    CONF,
    MAX_SLOTS,
    RB_NO_WAKEUP,
    RECORD,
    STATE,
    HitMaps,
    SlotConf,
    hit_program,
)
from hwbkptd.arch.bpf.ringbuf import RingbufReader
from hwbkptd.arch.bpf.spill import SPILL_SEQ, SPILL_SLOTS, SpillReader

__all__ = ["HitPipe", "SlotCounts", "probe_bpf"]

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ADDR_KEY = struct.Struct("<IIQ")


class SlotCounts:
    __slots__ = ("dropped", "hits", "prev", "retried", "spilled")

    def __init__(
        self, prev: tuple[int, ...], hits: int, dropped: int, retried: int = 0, spilled: int = 0
    ) -> None:
        self.prev, self.hits, self.dropped = prev, hits, dropped
        self.retried, self.spilled = retried, spilled


class HitPipe:
    """The program and maps of one mechanism (see the module doc)."""

    def __init__(self, ring_bytes: int = 1 << 25, max_events: int = 1 << 14) -> None:
        fds: list[int] = []
        try:
            for args in (
                (bpf.MAP_HASH, 8, 4, max_events, "hwbkpt_events"),
                (bpf.MAP_HASH, 16, 4, max_events, "hwbkpt_by_addr"),
                (bpf.MAP_ARRAY, 4, CONF.size, MAX_SLOTS, "hwbkpt_conf"),
                (bpf.MAP_ARRAY, 4, STATE.size, MAX_SLOTS, "hwbkpt_state"),
                (bpf.MAP_ARRAY, 4, 8, 1, "hwbkpt_control"),
                (bpf.MAP_RINGBUF, 0, 0, ring_bytes, "hwbkpt_ring"),
            ):
                fds.append(bpf.map_create(*args))
            spill_entry = SPILL_SEQ + RECORD.size
            fds.append(
                bpf.map_create(
                    bpf.MAP_ARRAY, 4, spill_entry, SPILL_SLOTS + 1, "hwbkpt_spill", bpf.F_MMAPABLE
                )
            )
            self.maps = HitMaps(*fds)
            self.prog = bpf.prog_load(bpf.PROG_PERF_EVENT, hit_program(self.maps), "hwbkpt_hit")
            self.reader = RingbufReader(self.maps.ring, ring_bytes)
            self.spill = SpillReader.of_map(self.maps.spill, RECORD.size)
        except BaseException:
            if hasattr(self, "reader"):
                self.reader.close()
            for fd in fds:
                os.close(fd)
            raise
        self._free = list(range(MAX_SLOTS - 1, 0, -1))  # key 0 stays unused
        self.per_record_wakeup = True
        self._closed = False

    # --- slots ------------------------------------------------------------------
    def new_slot(self, conf: SlotConf) -> int:
        """A fresh slot key with zeroed counters and this configuration (IndexError: full)."""
        if not self._free:
            raise IndexError("every BPF slot key is in use")
        key = self._free.pop()
        bpf.map_update(self.maps.state, _U32.pack(key), bytes(STATE.size))
        self.set_conf(key, conf)
        return key

    def set_conf(self, key: int, conf: SlotConf) -> None:
        bpf.map_update(self.maps.conf, _U32.pack(key), conf.pack())

    def free_slot(self, key: int) -> None:
        bpf.map_update(self.maps.conf, _U32.pack(key), bytes(CONF.size))
        self._free.append(key)

    def counts(self, key: int) -> SlotCounts:
        raw = bpf.map_lookup(self.maps.state, _U32.pack(key), STATE.size)
        f = STATE.unpack(raw) if raw else (0,) * 8
        return SlotCounts(tuple(f[:4]), f[4], f[5], f[6], f[7])

    # --- events -----------------------------------------------------------------
    def attach(self, event_fd: int, event_id: int, key: int) -> int:
        """Run the program on the event's traps for slot ``key``; returns the link fd."""
        bpf.map_update(self.maps.events, _U64.pack(event_id), _U32.pack(key))
        try:
            return bpf.link_create_perf_event(self.prog, event_fd, event_id)
        except BaseException:
            bpf.map_delete(self.maps.events, _U64.pack(event_id))
            raise

    def set_by_addr(self, pid: int, address: int, key: int | None) -> None:
        """The slot of inherited copies in ``pid`` trapping at ``address`` (None: none)."""
        k = _ADDR_KEY.pack(pid, 0, address)
        if key is None:
            bpf.map_delete(self.maps.by_addr, k)
        else:
            bpf.map_update(self.maps.by_addr, k, _U32.pack(key))

    def detach(self, event_id: int, link_fd: int) -> None:
        os.close(link_fd)
        bpf.map_delete(self.maps.events, _U64.pack(event_id))

    # --- delivery ---------------------------------------------------------------
    def set_wakeup(self, per_record: bool) -> None:
        """Wake the reader per record (idle: latency) or never (busy: a timer drains)."""
        if per_record != self.per_record_wakeup:
            self.per_record_wakeup = per_record
            flags = 0 if per_record else RB_NO_WAKEUP
            bpf.map_update(self.maps.control, _U32.pack(0), _U64.pack(flags))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.reader.close()
        self.spill.close()
        os.close(self.prog)
        maps = self.maps
        for fd in (maps.events, maps.by_addr, maps.conf, maps.state, maps.control, maps.spill):
            os.close(fd)
        os.close(self.maps.ring)


def probe_bpf() -> tuple[bool, str]:
    """Whether the hit program loads and attaches to a user breakpoint here, and why not.

    Loads the real program and links it to a breakpoint on a variable of this
    process (never enabled), so the answer covers the program type, the ring
    buffer map, the helpers and links with cookies on breakpoint events.
    """
    from hwbkptd.arch.linux.perf_event import HW_BREAKPOINT_W, breakpoint_attr, perf_event_open

    try:
        pipe = HitPipe(ring_bytes=1 << 12, max_events=4)
    except bpf.VerifierError as exc:
        return False, f"the hit program was refused: {exc}"
    except OSError as exc:
        return False, _why(exc, "cannot create BPF maps or load the hit program")
    var = ctypes.c_uint64(0)
    try:
        attr = breakpoint_attr(ctypes.addressof(var), 8, HW_BREAKPOINT_W, disabled=True)
        try:
            fd = perf_event_open(attr, 0, -1)
        except OSError as exc:
            return False, _why(exc, "cannot open a perf breakpoint event")
        try:
            link = pipe.attach(fd, 1, pipe.new_slot(SlotConf(((ctypes.addressof(var), 8),))))
            os.close(link)
        except OSError as exc:
            return False, _why(exc, "cannot link a BPF program to a breakpoint event")
        finally:
            os.close(fd)
    finally:
        pipe.close()
    return True, "hit program loaded and linked to a breakpoint event (CAP_BPF, CAP_PERFMON)"


def _why(exc: OSError, what: str) -> str:
    code = exc.errno or 0
    name = errno.errorcode.get(code, str(code))
    hint = " (needs CAP_BPF and CAP_PERFMON)" if code in (errno.EPERM, errno.EACCES) else ""
    return f"{what}: {name} ({os.strerror(code)}){hint}"
