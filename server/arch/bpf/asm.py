"""A small typed eBPF assembler: instructions as functions, jumps by label.

Encodings follow the kernel's instruction set (Documentation/bpf/standardization/
instruction-set.rst, include/uapi/linux/bpf.h): each instruction is 8 bytes,
``code:u8, dst:4 | src:4 << 4, off:s16, imm:s32``, little-endian here (x86_64).
``ld_imm64`` takes two slots; with ``src = BPF_PSEUDO_MAP_FD`` its immediate is a
map's file descriptor, which the verifier replaces by the map's address.

A program is a list of ``Insn`` and ``Label`` items; ``assemble`` resolves the
labels of jumps (offsets count 8-byte slots from the instruction after the jump).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "FP",
    "R0",
    "R1",
    "R2",
    "R3",
    "R4",
    "R5",
    "R6",
    "R7",
    "R8",
    "R9",
    "Helper",
    "Insn",
    "Item",
    "Label",
    "Reg",
    "add",
    "alu64",
    "and_",
    "assemble",
    "atomic_add",
    "atomic_fetch_add",
    "atomic_xchg",
    "call",
    "exit_",
    "ja",
    "jmp",
    "ld_imm64",
    "ld_map_fd",
    "ldx",
    "lsh",
    "mov",
    "or_",
    "rsh",
    "st",
    "stx",
    "sub",
]

# Instruction classes, sizes, modes, sources, operations (uapi bpf_common.h / bpf.h).
_LD, _LDX, _ST, _STX, _ALU64, _JMP = 0x00, 0x01, 0x02, 0x03, 0x07, 0x05
_SIZES = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}
_IMM, _MEM, _ATOMIC = 0x00, 0x60, 0xC0
_K, _X = 0x00, 0x08
_ALU_OPS = {
    "add": 0x00, "sub": 0x10, "mul": 0x20, "div": 0x30, "or": 0x40, "and": 0x50,
    "lsh": 0x60, "rsh": 0x70, "neg": 0x80, "mod": 0x90, "xor": 0xA0, "mov": 0xB0,
    "arsh": 0xC0,
}  # fmt: skip
_JMP_OPS = {
    "ja": 0x00, "jeq": 0x10, "jgt": 0x20, "jge": 0x30, "jset": 0x40, "jne": 0x50,
    "jsgt": 0x60, "jsge": 0x70, "jlt": 0xA0, "jle": 0xB0, "jslt": 0xC0, "jsle": 0xD0,
}  # fmt: skip
_CALL, _EXIT = 0x80, 0x90
_FETCH = 0x01
_XCHG = 0xE0
BPF_PSEUDO_MAP_FD = 1
_INSN = struct.Struct("<BBhi")


@dataclass(frozen=True, slots=True)
class Reg:
    n: int

    def __post_init__(self) -> None:
        if not 0 <= self.n <= 10:
            raise ValueError(f"no BPF register r{self.n}")


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9 = (Reg(n) for n in range(10))
#: The read-only frame pointer (r10); the stack grows down from it, 512 bytes.
FP = Reg(10)


class Helper:
    """Helper function ids (``enum bpf_func_id``) the programs here call."""

    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    KTIME_GET_NS = 5
    GET_SMP_PROCESSOR_ID = 8
    GET_CURRENT_PID_TGID = 14
    PROBE_READ_USER = 112
    PROBE_READ_KERNEL = 113
    RINGBUF_OUTPUT = 130
    GET_ATTACH_COOKIE = 174


@dataclass(frozen=True, slots=True)
class Label:
    name: str


@dataclass(frozen=True, slots=True)
class Insn:
    """One 8-byte slot; ``target`` names the label a jump goes to (resolved by assemble)."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    target: str = ""

    def encode(self, off: int | None = None) -> bytes:
        imm = self.imm if self.imm < 2**31 else self.imm - 2**32
        return _INSN.pack(
            self.code, self.dst | self.src << 4, self.off if off is None else off, imm
        )


def _imm32(value: int) -> int:
    if not -(2**31) <= value < 2**32:
        raise ValueError(f"immediate {value} does not fit 32 bits")
    return value


def alu64(op: str, dst: Reg, src: Reg | int) -> Insn:
    """``dst = dst op src`` on 64 bits (``mov``: ``dst = src``); src a register or imm32."""
    code = _ALU64 | _ALU_OPS[op]
    if isinstance(src, Reg):
        return Insn(code | _X, dst.n, src.n)
    return Insn(code | _K, dst.n, imm=_imm32(src))


def mov(dst: Reg, src: Reg | int) -> Insn:
    return alu64("mov", dst, src)


def add(dst: Reg, src: Reg | int) -> Insn:
    return alu64("add", dst, src)


def and_(dst: Reg, src: Reg | int) -> Insn:
    return alu64("and", dst, src)


def or_(dst: Reg, src: Reg | int) -> Insn:
    return alu64("or", dst, src)


def lsh(dst: Reg, src: Reg | int) -> Insn:
    return alu64("lsh", dst, src)


def rsh(dst: Reg, src: Reg | int) -> Insn:
    return alu64("rsh", dst, src)


def ldx(size: int, dst: Reg, src: Reg, off: int) -> Insn:
    """``dst = *(uSIZE *)(src + off)``."""
    return Insn(_LDX | _MEM | _SIZES[size], dst.n, src.n, off)


def stx(size: int, dst: Reg, off: int, src: Reg) -> Insn:
    """``*(uSIZE *)(dst + off) = src``."""
    return Insn(_STX | _MEM | _SIZES[size], dst.n, src.n, off)


def st(size: int, dst: Reg, off: int, imm: int) -> Insn:
    """``*(uSIZE *)(dst + off) = imm``."""
    return Insn(_ST | _MEM | _SIZES[size], dst.n, 0, off, _imm32(imm))


def atomic_add(size: int, dst: Reg, off: int, src: Reg) -> Insn:
    """``lock *(uSIZE *)(dst + off) += src`` (size 4 or 8)."""
    if size not in (4, 8):
        raise ValueError("atomic operations are 4 or 8 bytes wide")
    return Insn(_STX | _ATOMIC | _SIZES[size], dst.n, src.n, off, 0x00)


def atomic_fetch_add(size: int, dst: Reg, off: int, src: Reg) -> Insn:
    """``src = atomic_fetch_add((uSIZE *)(dst + off), src)``: adds, src gets the old value."""
    if size not in (4, 8):
        raise ValueError("atomic operations are 4 or 8 bytes wide")
    return Insn(_STX | _ATOMIC | _SIZES[size], dst.n, src.n, off, 0x00 | _FETCH)


def atomic_xchg(size: int, dst: Reg, off: int, src: Reg) -> Insn:
    """``src = xchg((uSIZE *)(dst + off), src)``: a store ordered after every earlier one."""
    if size not in (4, 8):
        raise ValueError("atomic operations are 4 or 8 bytes wide")
    return Insn(_STX | _ATOMIC | _SIZES[size], dst.n, src.n, off, _XCHG | _FETCH)


def sub(dst: Reg, src: Reg | int) -> Insn:
    return alu64("sub", dst, src)


def jmp(op: str, dst: Reg, src: Reg | int, target: str) -> Insn:
    """``if dst op src goto target``."""
    code = _JMP | _JMP_OPS[op]
    if isinstance(src, Reg):
        return Insn(code | _X, dst.n, src.n, target=target)
    return Insn(code | _K, dst.n, imm=_imm32(src), target=target)


def ja(target: str) -> Insn:
    return Insn(_JMP | _JMP_OPS["ja"], target=target)


def call(helper: int) -> Insn:
    return Insn(_JMP | _CALL, imm=helper)


def exit_() -> Insn:
    return Insn(_JMP | _EXIT)


def ld_imm64(dst: Reg, value: int, src: int = 0) -> tuple[Insn, Insn]:
    """``dst = value`` (64 bits): two slots, the high half in the second's imm."""
    value &= 2**64 - 1
    return (
        Insn(_LD | _IMM | _SIZES[8], dst.n, src, imm=value & 0xFFFFFFFF),
        Insn(0, imm=value >> 32),
    )


def ld_map_fd(dst: Reg, fd: int) -> tuple[Insn, Insn]:
    """``dst = &map`` for the map open as ``fd`` (BPF_PSEUDO_MAP_FD)."""
    return ld_imm64(dst, fd, BPF_PSEUDO_MAP_FD)


Item = Insn | Label | tuple[Insn, Insn]


def assemble(items: Iterable[Item]) -> bytes:
    """The program's bytes, jumps resolved; ValueError on an unknown or duplicate label."""
    flat: list[Insn | Label] = []
    for item in items:
        flat.extend(item if isinstance(item, tuple) else (item,))
    where: dict[str, int] = {}
    insns: list[Insn] = []
    for item in flat:
        if isinstance(item, Label):
            if item.name in where:
                raise ValueError(f"label {item.name!r} defined twice")
            where[item.name] = len(insns)
        else:
            insns.append(item)
    out = bytearray()
    for pc, insn in enumerate(insns):
        if insn.target:
            if insn.target not in where:
                raise ValueError(f"jump to unknown label {insn.target!r}")
            off = where[insn.target] - pc - 1
            if not -(2**15) <= off < 2**15:
                raise ValueError(f"jump to {insn.target!r} is too far ({off})")
            out += insn.encode(off)
        else:
            out += insn.encode()
    return bytes(out)


def count(program: Sequence[Item]) -> int:
    """Instruction slots of a program (ld_imm64 counts two)."""
    return sum(2 if isinstance(i, tuple) else 0 if isinstance(i, Label) else 1 for i in program)
