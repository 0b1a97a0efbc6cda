"""Arming with perf breakpoint events that raise SIGTRAP in the thread (Linux 5.13+).

One event per occupied slot, bound to the thread (pid=tid, cpu=-1), with
``sigtrap`` and ``remove_on_exec``. Its ``sig_data`` is a cookie naming the
armed slot, so a trap (SIGTRAP, si_code TRAP_PERF, the cookie in
si_perf_data) is attributed without reading DR6. Events can be opened and
closed while the thread runs, so no rewrite stops the thread. If the broker
dies, its descriptors close, the events vanish and the target runs on. (The
tracer thread keeps the events in a private descriptor table so that they
close before its own exit detaches the targets; a thread stopped at a trap
the tracer has not collected yet still gets its SIGTRAP: the kernel keeps an
unreported stop's signal.)

Attribution by generation: a slot whose chunk and holders are unchanged keeps
its event and takes the new generation; one whose holders changed (same
chunk) gets a new cookie through PERF_EVENT_IOC_MODIFY_ATTRIBUTES, so it stays
reserved; a changed chunk gets a new event. Replaced cookies are remembered for
a while, so a trap that raced the rewrite is reported under the generation it
happened under.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import itertools
import os

from hwbkptd.arch.linux import perf_event as pe
from hwbkptd.arch.ptrace.binding import TRAP_PERF
from hwbkptd.arch.ptrace.state import ArmedSlot, Tracee
from hwbkptd.core.mechanism import Refusal, SlotEntry, SlotWrite
from hwbkptd.core.model import Access, Chunk

__all__ = ["COOKIE_MAGIC", "PerfArming", "perf_sigtrap_works"]

#: Top 16 bits of every cookie: tells our traps from the target's own sigtrap events.
COOKIE_MAGIC = 0xB7B7
_MAGIC_SHIFT = 48
#: How many replaced slots a thread remembers for traps still in flight.
_RETIRED_KEEP = 64

#: A variable of ours to aim the capability probe at (the probe event is never enabled).
_PROBE = ctypes.c_uint64()

_BP_TYPE = {
    Access.WRITE: pe.HW_BREAKPOINT_W,
    Access.READ_WRITE: pe.HW_BREAKPOINT_RW,
    Access.READ: pe.HW_BREAKPOINT_RW,
    Access.EXEC: pe.HW_BREAKPOINT_X,
}
#: x86 takes exec breakpoints only with bp_len == sizeof(long).
_EXEC_LEN = 8


def _attr(chunk: Chunk, cookie: int) -> pe.PerfEventAttr:
    length = _EXEC_LEN if chunk.access is Access.EXEC else chunk.length
    return pe.breakpoint_attr(
        chunk.address,
        length,
        _BP_TYPE[chunk.access],
        exclude_kernel=True,
        sigtrap=True,
        remove_on_exec=True,
        sig_data=cookie,
    )


def perf_sigtrap_works(tid: int | None = None) -> tuple[bool, str]:
    """Can a sigtrap breakpoint event be opened here (on ``tid``, default this thread)?"""
    probe = pe.breakpoint_attr(
        ctypes.addressof(_PROBE),
        8,
        pe.HW_BREAKPOINT_W,
        exclude_kernel=True,
        sigtrap=True,
        remove_on_exec=True,
        disabled=True,
    )
    try:
        fd = pe.perf_event_open(probe, 0 if tid is None else tid, -1)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            # The attr was accepted; every register is just busy right now (perf, other
            # debuggers): a matter for each request, not for the capability.
            return True, ""
        name = errno.errorcode.get(err.errno or 0, str(err.errno))
        return False, f"perf breakpoint event with sigtrap refused: {name} ({err.strerror})"
    os.close(fd)
    return True, ""


class PerfArming:
    name = "perf"
    needs_stop = False
    #: A TRAP_PERF's si_addr is the data address, not the instruction pointer.
    ip_in_siginfo = False

    def __init__(self) -> None:
        self._serial = itertools.count(1)

    def _cookie(self) -> int:
        return (COOKIE_MAGIC << _MAGIC_SHIFT) | (next(self._serial) & ((1 << _MAGIC_SHIFT) - 1))

    def write(self, t: Tracee, w: SlotWrite) -> list[Refusal]:
        wanted: dict[tuple[str, int], SlotEntry] = {}
        for pool, entries in w.pools.items():
            for index, entry in enumerate(entries):
                if entry is not None:
                    wanted[(pool, index)] = entry
        gen = w.generation
        opening: list[tuple[tuple[str, int], SlotEntry]] = []
        # Free slots first, so a moved chunk never needs a fifth register.
        for key, slot in list(t.slots.items()):
            entry = wanted.get(key)
            if entry is not None and entry.chunk == slot.entry.chunk:
                if entry == slot.entry:
                    slot.generation = gen
                    continue
                if self._recookie(t, slot, entry, gen):
                    continue
            self._retire(t, slot)
            del t.slots[key]
        for key, entry in wanted.items():
            if key not in t.slots:
                opening.append((key, entry))
        refusals: list[Refusal] = []
        for (pool, index), entry in opening:
            cookie = self._cookie()
            try:
                fd = pe.perf_event_open(_attr(entry.chunk, cookie), t.tid, -1)
            except OSError as err:
                if err.errno == errno.ESRCH:
                    break  # the thread is gone; its exit is on its way
                reason = "external" if err.errno == errno.ENOSPC else _reason(err)
                refusals.append(Refusal(t.tid, pool, index, gen, reason))
                continue
            slot = ArmedSlot(pool, index, gen, entry, cookie, fd)
            t.slots[(pool, index)] = slot
            t.cookies[cookie] = slot
        t.generation = gen
        self._prune(t)
        return refusals

    def _recookie(self, t: Tracee, slot: ArmedSlot, entry: SlotEntry, gen: int) -> bool:
        """Same chunk, other holders: give the live event a new cookie without freeing it."""
        cookie = self._cookie()
        try:
            # A buffer argument: fcntl.ioctl would truncate a pointer passed as an int.
            fcntl.ioctl(slot.fd, pe.IOC_MODIFY_ATTRIBUTES, bytes(_attr(entry.chunk, cookie)))
        except OSError:
            return False
        new = ArmedSlot(slot.pool, slot.index, gen, entry, cookie, slot.fd)
        slot.fd = -1  # the descriptor now belongs to the new slot
        t.slots[(slot.pool, slot.index)] = new
        t.cookies[cookie] = new
        return True

    def _retire(self, t: Tracee, slot: ArmedSlot) -> None:
        if slot.fd >= 0:
            os.close(slot.fd)
            slot.fd = -1

    def _prune(self, t: Tracee) -> None:
        extra = len(t.cookies) - len(t.slots) - _RETIRED_KEEP
        if extra <= 0:
            return
        live = {slot.cookie for slot in t.slots.values()}
        for cookie in list(t.cookies):
            if extra <= 0:
                break
            if cookie not in live:
                del t.cookies[cookie]
                extra -= 1

    def clear(self, t: Tracee) -> None:
        for slot in t.slots.values():
            self._retire(t, slot)
        t.slots.clear()

    def drop(self, t: Tracee) -> None:
        self.clear(t)
        t.cookies.clear()

    def attribute(self, t: Tracee, code: int, perf_data: int) -> list[ArmedSlot] | None:
        if code != TRAP_PERF or perf_data >> _MAGIC_SHIFT != COOKIE_MAGIC:
            return None
        slot = t.cookies.get(perf_data)
        # One of ours from a slot long replaced: swallow it, there is no one to tell.
        return [slot] if slot is not None else []


def _reason(err: OSError) -> str:
    name = errno.errorcode.get(err.errno or 0, str(err.errno))
    return f"{name}: {err.strerror}"
