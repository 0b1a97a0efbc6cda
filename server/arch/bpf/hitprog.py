"""The BPF program run at every breakpoint trap, its maps, and its records.

One program serves every slot; what differs per slot lives in maps, so a
placement change updates maps and never reloads the program:

- ``events`` (hash, event id -> slot key u32): the link's cookie is the perf
  event's id, the key names the slot.
- ``by_addr`` (hash, (tgid u32, 0 u32, address u64) -> slot key): for the copies
  an inherited event makes in later threads. They carry the program but not the
  link's cookie (measured here, Linux 6.18: ``bpf_get_attach_cookie`` returns 0 in
  them), so the program finds their slot by process and watched address.
- ``conf`` (array by slot key, ``SlotConf``): the holders' regions, whether to
  read them as user or kernel memory, and each holder's in-kernel filter.
- ``state`` (array by slot key): the previous value of each region (the old
  value of the next hit), hits counted, records dropped (neither the ring nor
  the spill map took them), records written to the ring on a retry and records
  spilled. Only the program writes it after the slot key is handed out.
- ``control`` (array of one u64): the ``bpf_ringbuf_output`` flags, set by the
  reader: 0 wakes it per record (idle), ``BPF_RB_NO_WAKEUP`` under load.
- ``ring`` (ringbuf): ``Record`` per reported hit.
- ``spill`` (array, mmapable): records the ring refused, until the reader takes
  them (spill.py).

Per trap: look up the slot, read each region into the record (up to
``MAX_REGIONS`` of up to 8 bytes), swap it with the previous value, count the
hit (atomic fetch-add: the record carries the slot's count, so hits filtered in
the kernel still count exactly), evaluate the filter when every holder has one,
and write the record. The program returns 0: the perf event writes no sample.

The write is tried up to ``RING_ATTEMPTS`` times. Linux 6.18 refuses a
``bpf_ringbuf_output`` now and then with -EAGAIN while the ring is nearly empty
(measured here: about 1 in 40,000 writes of a tight loop while the other CPU is
busy, the ring's free space 32 MiB less at most 1,152 bytes, the refused call
taking 130-650 ns), and an immediate second call almost always succeeds; so a
refusal is retried and the retries are counted. A record every attempt failed
for (a full ring fails them all, and costs them) goes to the spill map; only
when that is half full too does it count as dropped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from hwbkptd.arch.bpf.asm import (
    FP,
    R0,
    R1,
    R2,
    R3,
    R4,
    R6,
    R7,
    R8,
    R9,
    Helper,
    Item,
    Label,
    add,
    and_,
    assemble,
    atomic_add,
    atomic_fetch_add,
    atomic_xchg,
    call,
    exit_,
    ja,
    jmp,
    ld_map_fd,
    ldx,
    mov,
    rsh,
    st,
    stx,
    sub,
)
from hwbkptd.arch.bpf.spill import SPILL_SEQ, SPILL_SLOTS

__all__ = [
    "CONF",
    "FILTER_CHANGED",
    "FILTER_EQUALS",
    "FILTER_NONE",
    "MAX_REGIONS",
    "MAX_SLOTS",
    "RB_NO_WAKEUP",
    "RECORD",
    "RING_ATTEMPTS",
    "STATE",
    "HitMaps",
    "Record",
    "SlotConf",
    "hit_program",
    "parse_record",
]

MAX_REGIONS = 4
MAX_SLOTS = 4096
FILTER_NONE, FILTER_CHANGED, FILTER_EQUALS = 0, 1, 2
RB_NO_WAKEUP = 1
#: Calls of bpf_ringbuf_output per record before it counts as dropped.
RING_ATTEMPTS = 8
#: SlotConf flags.
CONF_KERNEL = 1  # read with bpf_probe_read_kernel
CONF_FILTER = 2  # every holder has a filter: emit only hits some holder passes

# struct slot_conf { u32 nregions, flags; u64 addr[4]; u32 len[4]; u32 filt[4]; u64 eq[4]; }
CONF = struct.Struct("<II4Q4I4I4Q")
_C_N, _C_FLAGS, _C_ADDR, _C_LEN, _C_FILT, _C_EQ = 0, 4, 8, 40, 56, 72
# struct slot_state { u64 prev[4]; u64 hits; u64 dropped; u64 retried; u64 spilled; }
STATE = struct.Struct("<4QQQQQ")
_S_PREV, _S_HITS, _S_DROPPED, _S_RETRIED, _S_SPILLED = 0, 32, 40, 48, 56
# struct record { u64 cookie, time; u32 tid, pid, cpu, nvals; u64 ip, addr, hits;
#                 u64 val[4]; u64 old[4]; }
RECORD = struct.Struct("<QQIIIIQQQ4Q4Q")
_R_COOKIE, _R_TIME, _R_TID, _R_PID, _R_CPU, _R_N, _R_IP, _R_ADDR, _R_HITS = (
    0, 8, 16, 20, 24, 28, 32, 40, 48,
)  # fmt: skip
_R_VAL, _R_OLD = 56, 88

# struct bpf_perf_event_data on x86_64: pt_regs (21 u64, rip at index 16), then
# sample_period, addr.
_CTX_IP = 16 * 8
_CTX_ADDR = 21 * 8 + 8

# Stack frame (offsets from FP).
_K_COOKIE = -8
_K_SLOT = -16
_K_ZERO = -24
_K_ADDR = -40  # (tgid, 0, address): 16 bytes
_REC = -(RECORD.size + 40)  # the record, below the keys


@dataclass(frozen=True, slots=True)
class SlotConf:
    regions: tuple[tuple[int, int], ...]
    kernel: bool = False
    #: Per region: FILTER_NONE/CHANGED/EQUALS and the value EQUALS compares with.
    filters: tuple[tuple[int, bytes], ...] = ()
    #: Every holder has a filter: the program reports only hits one of them passes.
    #: Computed once (the delivery asks per record).
    filtering: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        filtering = bool(self.filters) and all(k != FILTER_NONE for k, _ in self.filters)
        object.__setattr__(self, "filtering", filtering)

    def pack(self) -> bytes:
        if len(self.regions) > MAX_REGIONS or any(n > 8 for _, n in self.regions):
            raise ValueError("the program reads up to 4 regions of up to 8 bytes")
        addrs = [a for a, _ in self.regions] + [0] * (MAX_REGIONS - len(self.regions))
        lens = [n for _, n in self.regions] + [0] * (MAX_REGIONS - len(self.regions))
        kinds = [k for k, _ in self.filters] + [0] * (MAX_REGIONS - len(self.filters))
        eqs = [int.from_bytes(v.ljust(8, b"\0"), "little") for _, v in self.filters]
        eqs += [0] * (MAX_REGIONS - len(eqs))
        flags = (CONF_KERNEL if self.kernel else 0) | (CONF_FILTER if self.filtering else 0)
        return CONF.pack(len(self.regions), flags, *addrs, *lens, *kinds, *eqs)


@dataclass(frozen=True, slots=True)
class HitMaps:
    events: int
    by_addr: int
    conf: int
    state: int
    control: int
    ring: int
    spill: int


class Record:
    """One hit as the program wrote it (values cut to their regions' lengths by the reader)."""

    __slots__ = ("addr", "cookie", "cpu", "hits", "ip", "old", "pid", "tid", "time", "values")

    def __init__(
        self, cookie: int, time: int, tid: int, pid: int, cpu: int, ip: int, addr: int,
        hits: int, values: tuple[int, ...], old: tuple[int, ...],
    ) -> None:  # fmt: skip
        self.cookie, self.time, self.tid, self.pid, self.cpu = cookie, time, tid, pid, cpu
        self.ip, self.addr, self.hits, self.values, self.old = ip, addr, hits, values, old


def parse_record(data: memoryview | bytes, offset: int = 0) -> Record:
    f = RECORD.unpack_from(data, offset)
    n = min(f[5], MAX_REGIONS)
    return Record(f[0], f[1], f[2], f[3], f[4], f[6], f[7], f[8], f[9 : 9 + n], f[13 : 13 + n])


def _lookup(map_fd: int, key: int) -> list[Item]:
    """r0 = bpf_map_lookup_elem(map, FP + key): the value's address, or 0."""
    return [ld_map_fd(R1, map_fd), mov(R2, FP), add(R2, key), call(Helper.MAP_LOOKUP_ELEM)]


def _region(i: int) -> list[Item]:
    """Read region i into record.val[i]; old value out of state, new value into it."""
    done = f"region{i}_done"
    rec_val = _REC + _R_VAL + 8 * i
    return [
        ldx(4, R1, R7, _C_N),
        jmp("jle", R1, i, "regions_done"),
        ldx(4, R2, R7, _C_LEN + 4 * i),
        jmp("jgt", R2, 8, done),  # bounds the size for the verifier
        mov(R1, FP),
        add(R1, rec_val),
        ldx(8, R3, R7, _C_ADDR + 8 * i),
        ldx(4, R4, R7, _C_FLAGS),
        and_(R4, CONF_KERNEL),
        jmp("jne", R4, 0, f"region{i}_kernel"),
        call(Helper.PROBE_READ_USER),
        ja(f"region{i}_read"),
        Label(f"region{i}_kernel"),
        call(Helper.PROBE_READ_KERNEL),
        Label(f"region{i}_read"),
        ldx(8, R1, R8, _S_PREV + 8 * i),
        stx(8, FP, _REC + _R_OLD + 8 * i, R1),
        ldx(8, R2, FP, rec_val),
        stx(8, R8, _S_PREV + 8 * i, R2),
        Label(done),
    ]


def _filter(i: int) -> list[Item]:
    """Jump to ``emit`` when holder i's filter passes (or it has none)."""
    nxt = f"filter{i}_next"
    return [
        ldx(4, R1, R7, _C_N),
        jmp("jle", R1, i, "dropped_by_filter"),
        ldx(4, R1, R7, _C_FILT + 4 * i),
        jmp("jeq", R1, FILTER_NONE, "emit"),
        ldx(8, R2, FP, _REC + _R_VAL + 8 * i),
        jmp("jne", R1, FILTER_CHANGED, f"filter{i}_equals"),
        ldx(8, R3, FP, _REC + _R_OLD + 8 * i),
        jmp("jne", R2, R3, "emit"),
        ja(nxt),
        Label(f"filter{i}_equals"),
        ldx(8, R3, R7, _C_EQ + 8 * i),
        jmp("jeq", R2, R3, "emit"),
        Label(nxt),
    ]


def hit_program(maps: HitMaps) -> bytes:
    """The program's code, bound to these maps' descriptors."""
    prog: list[Item] = [
        mov(R6, R1),
        call(Helper.GET_ATTACH_COOKIE),
        stx(8, FP, _K_COOKIE, R0),
        *_lookup(maps.events, _K_COOKIE),
        jmp("jne", R0, 0, "found"),
        # An inherited copy (cookie 0): find the slot by process and address.
        call(Helper.GET_CURRENT_PID_TGID),
        rsh(R0, 32),
        stx(8, FP, _K_ADDR, R0),
        ldx(8, R1, R6, _CTX_ADDR),
        stx(8, FP, _K_ADDR + 8, R1),
        *_lookup(maps.by_addr, _K_ADDR),
        jmp("jeq", R0, 0, "out"),
        Label("found"),
        ldx(4, R1, R0, 0),
        stx(4, FP, _K_SLOT, R1),
        *_lookup(maps.conf, _K_SLOT),
        jmp("jeq", R0, 0, "out"),
        mov(R7, R0),
        *_lookup(maps.state, _K_SLOT),
        jmp("jeq", R0, 0, "out"),
        mov(R8, R0),
        # The record's fixed part.
        ldx(8, R1, FP, _K_COOKIE),
        stx(8, FP, _REC + _R_COOKIE, R1),
        call(Helper.KTIME_GET_NS),
        stx(8, FP, _REC + _R_TIME, R0),
        call(Helper.GET_CURRENT_PID_TGID),
        stx(4, FP, _REC + _R_TID, R0),
        rsh(R0, 32),  # the tgid
        stx(4, FP, _REC + _R_PID, R0),
        call(Helper.GET_SMP_PROCESSOR_ID),
        stx(4, FP, _REC + _R_CPU, R0),
        ldx(4, R1, R7, _C_N),
        stx(4, FP, _REC + _R_N, R1),
        ldx(8, R1, R6, _CTX_IP),
        stx(8, FP, _REC + _R_IP, R1),
        ldx(8, R1, R6, _CTX_ADDR),
        stx(8, FP, _REC + _R_ADDR, R1),
    ]
    for i in range(2 * MAX_REGIONS):
        prog.append(st(8, FP, _REC + _R_VAL + 8 * i, 0))
    for i in range(MAX_REGIONS):
        prog += _region(i)
    prog += [
        Label("regions_done"),
        # Count the hit: r1 = old count (fetch-add), the record carries old + 1.
        mov(R1, 1),
        atomic_fetch_add(8, R8, _S_HITS, R1),
        add(R1, 1),
        stx(8, FP, _REC + _R_HITS, R1),
        ldx(4, R1, R7, _C_FLAGS),
        and_(R1, CONF_FILTER),
        jmp("jeq", R1, 0, "emit"),
    ]
    for i in range(MAX_REGIONS):
        prog += _filter(i)
    prog += [
        Label("dropped_by_filter"),
        ja("out"),
        Label("emit"),
        st(4, FP, _K_ZERO, 0),
        *_lookup(maps.control, _K_ZERO),
        mov(R9, 0),
        jmp("jeq", R0, 0, "flags_read"),
        ldx(8, R9, R0, 0),
        Label("flags_read"),
    ]
    for attempt in range(RING_ATTEMPTS):
        prog += [
            ld_map_fd(R1, maps.ring),
            mov(R2, FP),
            add(R2, _REC),
            mov(R3, RECORD.size),
            mov(R4, R9),
            call(Helper.RINGBUF_OUTPUT),
            jmp("jeq", R0, 0, "written_on_retry" if attempt else "out"),
        ]
    prog += _spill(maps)
    prog += [
        Label("dropped"),
        mov(R1, 1),
        atomic_add(8, R8, _S_DROPPED, R1),
        ja("out"),
        Label("written_on_retry"),
        mov(R1, 1),
        atomic_add(8, R8, _S_RETRIED, R1),
        Label("out"),
        mov(R0, 0),
        exit_(),
    ]
    return assemble(prog)


def _spill(maps: HitMaps) -> list[Item]:
    """The record into the spill map (spill.py), or to ``dropped`` when it is half full."""
    prog: list[Item] = [
        st(4, FP, _K_ZERO, SPILL_SLOTS),
        *_lookup(maps.spill, _K_ZERO),
        jmp("jeq", R0, 0, "dropped"),
        mov(R6, R0),  # the positions: head, tail
        ldx(8, R1, R6, 0),
        ldx(8, R2, R6, 8),
        sub(R1, R2),
        jmp("jge", R1, SPILL_SLOTS // 2, "dropped"),
        mov(R7, 1),
        atomic_fetch_add(8, R6, 0, R7),  # r7 = this entry's position
        mov(R1, R7),
        and_(R1, SPILL_SLOTS - 1),
        stx(4, FP, _K_ZERO, R1),
        *_lookup(maps.spill, _K_ZERO),
        # Never taken (the key is below max_entries); the verifier wants the check.
        jmp("jeq", R0, 0, "dropped"),
    ]
    for off in range(0, RECORD.size, 8):
        prog += [ldx(8, R1, FP, _REC + off), stx(8, R0, SPILL_SEQ + off, R1)]
    return [
        *prog,
        add(R7, 1),
        atomic_xchg(8, R0, 0, R7),  # complete: seq = position + 1, after the copy
        mov(R1, 1),
        atomic_add(8, R8, _S_SPILLED, R1),
        ja("out"),
    ]
