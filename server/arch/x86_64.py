"""x86_64 debug registers: validation, splitting and the DR6/DR7 bit layouts.

Pure: no system calls. The field layouts follow the Intel SDM, volume 3,
"Debug Registers" (DR0-DR3 addresses, DR6 status, DR7 control).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hwbkptd.core.errors import InvalidArgument
from hwbkptd.core.model import Access, Chunk

__all__ = [
    "DR6_BS",
    "DR7_LE",
    "KERNEL_SPACE_START",
    "POOL",
    "TASK_SIZE_MAX",
    "USER_DEBUGREG_OFFSET",
    "X86_64",
    "debugreg_offset",
    "decode_dr6",
    "decode_dr7",
    "dr6_single_step",
    "encode_dr7",
    "split_aligned",
]

#: The one pool: DR0-DR3 serve exec and data alike.
POOL = "dr"
#: Number of address registers (DR0-DR3); DR7 has fields for exactly this many.
NUM_SLOTS = 4
#: Linux's TASK_SIZE_MAX with 4-level paging: the last user page below 2^47 is a guard page.
TASK_SIZE_MAX = 0x7FFF_FFFF_F000
#: The lowest kernel-half canonical address with 48-bit virtual addresses.
KERNEL_SPACE_START = 0xFFFF_8000_0000_0000
#: offsetof(struct user, u_debugreg) on x86_64 (sys/user.h), for PTRACE_PEEKUSER/POKEUSER.
USER_DEBUGREG_OFFSET = 848
#: DR7 bit 8, "local exact breakpoint enable".
DR7_LE = 1 << 8
#: DR6 bit 14: the trap was a single step (TF), not a breakpoint.
DR6_BS = 1 << 14

_ADDRESS_LIMIT = 1 << 64
_MAX_REGION = 32
_PIECES = (8, 4, 2, 1)

# DR7 R/W field values. 0b10 is I/O breakpoints (needs CR4.DE, never for user threads).
_RW_EXEC = 0b00
_RW_WRITE = 0b01
_RW_IO = 0b10
_RW_READ_WRITE = 0b11
_RW_OF = {Access.EXEC: _RW_EXEC, Access.WRITE: _RW_WRITE, Access.READ_WRITE: _RW_READ_WRITE}
_ACCESS_OF = {v: k for k, v in _RW_OF.items()}
# DR7 LEN field values; the encoding is not monotonic (8 bytes is 0b10, 4 bytes is 0b11).
_LEN_OF = {1: 0b00, 2: 0b01, 8: 0b10, 4: 0b11}
_LENGTH_OF = {v: k for k, v in _LEN_OF.items()}


def _is_canonical(address: int) -> bool:
    # 48-bit virtual addresses: bits 63..47 are copies of bit 47.
    top = address >> 47
    return top in (0, (1 << 17) - 1)


def split_aligned(address: int, length: int) -> tuple[tuple[int, int], ...]:
    """Greedy split of ``[address, address+length)`` into naturally aligned 8/4/2/1 pieces.

    At each step the largest piece that is aligned at the current address and
    still fits is taken; for power-of-two aligned pieces this yields the fewest
    pieces that cover the region exactly.
    """
    pieces: list[tuple[int, int]] = []
    at, end = address, address + length
    while at < end:
        size = next(s for s in _PIECES if at % s == 0 and at + s <= end)
        pieces.append((at, size))
        at += size
    return tuple(pieces)


class X86_64:
    """The x86_64 arch: one pool of four slots, 1-byte exec, read watched as read/write."""

    name: str = "x86_64"
    max_region_length: int = _MAX_REGION
    # The hardware has no read-only watch (R/W 0b10 is I/O): a read watch is armed as
    # read/write and the broker drops the hits whose value changed (writes), as gdb does
    # for rwatch; a write of the same value is indistinguishable from a read.
    read_emulated: bool = True
    exec_length: int = 1

    # Stateless: any two instances are the same arch, so layouts compare by value.
    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return "X86_64()"

    def pool_for(self, access: Access) -> str:
        return POOL

    def split(
        self,
        address: int,
        length: int,
        access: Access,
        *,
        kernel: bool,
        pools: Mapping[str, int],
    ) -> tuple[Chunk, ...]:
        if not isinstance(access, Access):
            raise InvalidArgument("spec.access", f"unknown access kind {access!r}")
        length = _check_length(length, access)
        _check_address(address, length, kernel=kernel)
        if access is Access.EXEC:
            pieces: tuple[tuple[int, int], ...] = ((address, 1),)
        else:
            pieces = split_aligned(address, length)
        slots = pools.get(POOL, 0)
        if len(pieces) > slots:
            raise InvalidArgument(
                "spec.length",
                f"unsplittable: region needs {len(pieces)} slots, the pool has {slots}",
            )
        armed = Access.READ_WRITE if access is Access.READ else access
        return tuple(Chunk(POOL, at, size, armed) for at, size in pieces)


def _check_length(length: int, access: Access) -> int:
    if access is Access.EXEC:
        if length in (0, 1):
            return 1
        raise InvalidArgument(
            "spec.length",
            f"x86 exec breakpoints are 1 byte (the instruction's first byte): "
            f"length must be 0 or 1, got {length}",
        )
    if not 1 <= length <= _MAX_REGION:
        raise InvalidArgument(
            "spec.length", f"length must be 1 to {_MAX_REGION} bytes, got {length}"
        )
    return length


def _check_address(address: int, length: int, *, kernel: bool) -> None:
    if not 0 <= address < _ADDRESS_LIMIT:
        raise InvalidArgument("spec.address", f"address {address:#x} is not a 64-bit address")
    last = address + length - 1
    if last >= _ADDRESS_LIMIT:
        raise InvalidArgument(
            "spec.length",
            f"region {address:#x}+{length} wraps past the end of the 64-bit address space",
        )
    if not _is_canonical(address):
        raise InvalidArgument(
            "spec.address",
            f"non-canonical address {address:#x}: with 48-bit virtual addresses "
            f"bits 63..47 must all be equal",
        )
    if kernel:
        if address < KERNEL_SPACE_START:
            raise InvalidArgument(
                "spec.address",
                f"user address {address:#x} in kernel scope "
                f"(kernel space starts at {KERNEL_SPACE_START:#x})",
            )
        return
    if address >= KERNEL_SPACE_START:
        raise InvalidArgument(
            "spec.address",
            f"kernel address {address:#x} in user scope (user space ends at {TASK_SIZE_MAX:#x})",
        )
    if last >= TASK_SIZE_MAX:
        raise InvalidArgument(
            "spec.address",
            f"region {address:#x}..{last:#x} is not below the top of user space {TASK_SIZE_MAX:#x}",
        )


def encode_dr7(slots: Sequence[Chunk | None]) -> int:
    """DR7 for up to four slots (index i is DRi); None leaves that slot disabled.

    Only the local enables (L0-L3) are used: the registers are per thread, and
    the kernel clears global enables on a task switch anyway. LE (bit 8) is set
    whenever a slot is enabled, as gdb does: the SDM recommends LE for exact data
    breakpoints; processors since the P6 ignore it, and it costs nothing.
    """
    if len(slots) > NUM_SLOTS:
        raise ValueError(f"x86 has {NUM_SLOTS} debug address registers, got {len(slots)} slots")
    value = 0
    for i, chunk in enumerate(slots):
        if chunk is None:
            continue
        rw = _RW_OF.get(chunk.access)
        if rw is None:
            raise ValueError(f"slot {i}: x86 cannot arm {chunk.access.value} (use READ_WRITE)")
        if chunk.access is Access.EXEC:
            if chunk.length != 1:
                raise ValueError(f"slot {i}: exec length must be 1, got {chunk.length}")
            len_bits = 0b00
        else:
            if chunk.length not in _LEN_OF:
                raise ValueError(f"slot {i}: length must be 1, 2, 4 or 8, got {chunk.length}")
            if chunk.address % chunk.length:
                raise ValueError(f"slot {i}: {chunk.address:#x} is not {chunk.length}-aligned")
            len_bits = _LEN_OF[chunk.length]
        value |= 1 << (2 * i)
        value |= rw << (16 + 4 * i)
        value |= len_bits << (18 + 4 * i)
    if value:
        value |= DR7_LE
    return value


def decode_dr7(value: int) -> tuple[tuple[Access, int] | None, ...]:
    """The (access, length) armed in each of DR0-DR3, or None where neither L nor G is set."""
    slots: list[tuple[Access, int] | None] = []
    for i in range(NUM_SLOTS):
        if not (value >> (2 * i)) & 0b11:
            slots.append(None)
            continue
        rw = (value >> (16 + 4 * i)) & 0b11
        len_bits = (value >> (18 + 4 * i)) & 0b11
        if rw == _RW_IO:
            raise ValueError(f"slot {i}: R/W 0b10 is an I/O breakpoint, not a memory one")
        access = _ACCESS_OF[rw]
        if access is Access.EXEC and len_bits:
            raise ValueError(f"slot {i}: exec breakpoint with LEN {len_bits:#04b} (must be 00)")
        slots.append((access, _LENGTH_OF[len_bits]))
    return tuple(slots)


def decode_dr6(value: int) -> tuple[int, ...]:
    """Indices of the slots whose condition was met (B0-B3, DR6 bits 0-3)."""
    return tuple(i for i in range(NUM_SLOTS) if (value >> i) & 1)


def dr6_single_step(value: int) -> bool:
    """True if the trap came from single-stepping (DR6.BS)."""
    return bool(value & DR6_BS)


def debugreg_offset(index: int) -> int:
    """The PTRACE_PEEKUSER/POKEUSER offset of DR<index> (0-7; 4 and 5 are reserved)."""
    if not 0 <= index <= 7:
        raise ValueError(f"debug register index must be 0 to 7, got {index}")
    return USER_DEBUGREG_OFFSET + 8 * index
