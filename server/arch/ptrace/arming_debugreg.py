"""Arming by writing DR0-DR3 and DR7 with PTRACE_POKEUSER (the fallback before Linux 5.13).

The thread must be in a ptrace-stop for every write. A trap is a SIGTRAP with
si_code TRAP_HWBKPT and the instruction pointer in si_addr; DR6 says which slot
fired (the kernel rewrites it at every trap: nothing to clear), and the trap is attributed to
the thread's current generation (the tracer never rewrites a thread that has a
SIGTRAP pending, so that generation is the one the trap happened under).

Two things this arming cannot avoid, said in ``info``: the registers belong to
the thread, not to a descriptor of the broker, so if the broker dies they stay
armed and the target dies of SIGTRAP at its next hit; and the kernel keeps a
disabled ptrace breakpoint reserved in every register once written, until the
thread exits or execs.
"""

from __future__ import annotations

import contextlib
import errno

from hwbkptd.arch.ptrace import binding as pt
from hwbkptd.arch.ptrace.binding import TRAP_HWBKPT
from hwbkptd.arch.ptrace.state import ArmedSlot, Tracee
from hwbkptd.arch.x86_64 import POOL, debugreg_offset, decode_dr6, encode_dr7
from hwbkptd.core.mechanism import Refusal, SlotEntry, SlotWrite
from hwbkptd.core.model import Chunk

__all__ = ["DebugregArming"]

_SLOTS = 4
_DR6 = debugreg_offset(6)
_DR7 = debugreg_offset(7)


def _reason(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return "external"
    name = errno.errorcode.get(err.errno or 0, str(err.errno))
    return f"{name}: {err.strerror}"


class DebugregArming:
    name = "debugreg"
    needs_stop = True
    #: A TRAP_HWBKPT's si_addr is the instruction pointer at the trap (send_sigtrap).
    ip_in_siginfo = True

    def write(self, t: Tracee, w: SlotWrite) -> list[Refusal]:
        gen = w.generation
        refusals: list[Refusal] = []
        wanted: list[SlotEntry | None] = [None] * _SLOTS
        for pool, entries in w.pools.items():
            for index, entry in enumerate(entries):
                if entry is None:
                    continue
                if pool != POOL or index >= _SLOTS:
                    why = f"no slot {pool}[{index}] on x86"
                    refusals.append(Refusal(t.tid, pool, index, gen, why))
                    continue
                wanted[index] = entry
        old: list[Chunk | None] = [None] * _SLOTS
        for (_, index), slot in t.slots.items():
            old[index] = slot.entry.chunk
        chunks: list[Chunk | None] = [e.chunk if e is not None else None for e in wanted]
        if chunks != old:
            refused = self._program(t, old, chunks)
            for index in refused:
                refusals.append(Refusal(t.tid, POOL, index, gen, refused[index]))
                wanted[index] = None
        t.slots = {
            (POOL, index): ArmedSlot(POOL, index, gen, entry)
            for index, entry in enumerate(wanted)
            if entry is not None
        }
        t.generation = gen
        return refusals

    def _program(
        self, t: Tracee, old: list[Chunk | None], chunks: list[Chunk | None]
    ) -> dict[int, str]:
        """Write the registers; returns the refused slot indices with reasons."""
        refused: dict[int, str] = {}
        if t.dr7:
            pt.pokeuser(t.tid, _DR7, 0)
            t.dr7 = 0
        for index, chunk in enumerate(chunks):
            before = old[index]
            if chunk is None or (before is not None and before.address == chunk.address):
                continue
            try:
                pt.pokeuser(t.tid, debugreg_offset(index), chunk.address)
            except OSError as err:
                refused[index] = _reason(err)
        armed = [c if i not in refused else None for i, c in enumerate(chunks)]
        try:
            value = encode_dr7(armed)
            if value:
                pt.pokeuser(t.tid, _DR7, value)
            t.dr7 = value
            return refused
        except OSError:
            pass
        # Something refused: enable one slot at a time to find which.
        accepted: list[Chunk | None] = [None] * _SLOTS
        for index, chunk in enumerate(armed):
            if chunk is None:
                continue
            trial = list(accepted)
            trial[index] = chunk
            try:
                pt.pokeuser(t.tid, _DR7, encode_dr7(trial))
            except OSError as err:
                refused[index] = _reason(err)
                continue
            accepted = trial
        t.dr7 = encode_dr7(accepted)
        return refused

    def clear(self, t: Tracee) -> None:
        if t.dr7:
            # Gone, or not stopped: its exit or exec clears them anyway.
            with contextlib.suppress(OSError):
                pt.pokeuser(t.tid, _DR7, 0)
            t.dr7 = 0
        t.slots.clear()

    def drop(self, t: Tracee) -> None:
        # exec flushes ptrace breakpoints (flush_thread), exit frees them.
        t.dr7 = 0
        t.slots.clear()

    def attribute(self, t: Tracee, code: int, perf_data: int) -> list[ArmedSlot] | None:
        if code != TRAP_HWBKPT:
            return None
        # DR6 as ptrace shows it is the kernel's per-thread copy, which every #DB from
        # user space rewrites (cleared, then the slots that fired): never cleared here,
        # which also makes this call idempotent (stops.py may attribute a trap twice).
        dr6 = pt.peekuser(t.tid, _DR6)
        fired = [t.slots.get((POOL, i)) for i in decode_dr6(dr6)]
        # Only a tracer can arm debug registers, and we are the tracer: every
        # TRAP_HWBKPT is ours, even one from a slot cleared since (swallowed).
        return [slot for slot in fired if slot is not None]
