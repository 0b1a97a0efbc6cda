"""arm64 breakpoints and watchpoints: validation, splitting and the BCR/WCR bit layouts.

Pure: no system calls. The field layouts follow the Arm ARM, DBGBCR<n>_EL1 and
DBGWCR<n>_EL1; the privilege encodings are the ones Linux uses for EL0/EL1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hwbkptd.core.errors import InvalidArgument
from hwbkptd.core.model import Access, Chunk

__all__ = [
    "DATA_POOL",
    "EXEC_POOL",
    "KERNEL_SPACE_START",
    "USER_SPACE_END",
    "Arm64",
    "decode_bcr",
    "decode_wcr",
    "encode_bcr",
    "encode_wcr",
    "split_doublewords",
    "watch_hit_slot",
]

#: Breakpoint registers (DBGBVR/DBGBCR pairs).
EXEC_POOL = "exec"
#: Watchpoint registers (DBGWVR/DBGWCR pairs).
DATA_POOL = "data"
#: User space is [0, 2^48) with 48-bit virtual addresses (TTBR0).
USER_SPACE_END = 1 << 48
#: Kernel space is [0xffff000000000000, 2^64) (TTBR1).
KERNEL_SPACE_START = 0xFFFF_0000_0000_0000

_ADDRESS_LIMIT = 1 << 64
_MAX_REGION = 32
_INSN = 4
_DWORD = 8

# Privilege fields (BCR.PMC, WCR.PAC): 0b10 matches EL0 only, 0b01 EL1 only.
_PRIV_EL0 = 0b10
_PRIV_EL1 = 0b01
# WCR.LSC: which accesses match.
_LSC_OF = {Access.READ: 0b01, Access.WRITE: 0b10, Access.READ_WRITE: 0b11}
_ACCESS_OF = {v: k for k, v in _LSC_OF.items()}
# BCR.BAS 0b1111 is "match the A64 instruction at BVR"; other values are for AArch32.
_BAS_A64 = 0b1111

_E = 1 << 0
_PRIV_SHIFT = 1
_LSC_SHIFT = 3
_BCR_BAS_SHIFT = 5
_WCR_BAS_SHIFT = 5
_BT_SHIFT = 20
_MASK_SHIFT = 24


class Arm64:
    """The arm64 arch: separate exec and data pools, 4-byte exec, native read watches."""

    name: str = "arm64"
    max_region_length: int = _MAX_REGION
    read_emulated: bool = False
    exec_length: int = _INSN

    # Stateless: any two instances are the same arch, so layouts compare by value.
    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return "Arm64()"

    def pool_for(self, access: Access) -> str:
        return EXEC_POOL if access is Access.EXEC else DATA_POOL

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
        if access is Access.EXEC:
            if length not in (0, _INSN):
                raise InvalidArgument(
                    "spec.length",
                    f"arm64 exec breakpoints cover one 4-byte A64 instruction: "
                    f"length must be 0 or 4, got {length}",
                )
            length = _INSN
        elif not 1 <= length <= _MAX_REGION:
            raise InvalidArgument(
                "spec.length", f"length must be 1 to {_MAX_REGION} bytes, got {length}"
            )
        _check_address(address, length, kernel=kernel)
        if access is Access.EXEC:
            if address % _INSN:
                raise InvalidArgument(
                    "spec.address",
                    f"misaligned exec address {address:#x}: A64 instructions are 4-byte aligned",
                )
            pieces: tuple[tuple[int, int], ...] = ((address, _INSN),)
        else:
            pieces = split_doublewords(address, length)
        pool = self.pool_for(access)
        slots = pools.get(pool, 0)
        if len(pieces) > slots:
            raise InvalidArgument(
                "spec.length",
                f"unsplittable: region needs {len(pieces)} slots, the pool has {slots}",
            )
        return tuple(Chunk(pool, at, size, access) for at, size in pieces)


def split_doublewords(address: int, length: int) -> tuple[tuple[int, int], ...]:
    """Split a region into runs that each stay inside one aligned 8-byte doubleword.

    A watchpoint selects any bytes of one doubleword (WCR.BAS), so the fewest
    slots are one per doubleword the region touches.
    """
    pieces: list[tuple[int, int]] = []
    at, end = address, address + length
    while at < end:
        stop = min(end, (at // _DWORD + 1) * _DWORD)
        pieces.append((at, stop - at))
        at = stop
    return tuple(pieces)


def _check_address(address: int, length: int, *, kernel: bool) -> None:
    if not 0 <= address < _ADDRESS_LIMIT:
        raise InvalidArgument("spec.address", f"address {address:#x} is not a 64-bit address")
    last = address + length - 1
    if last >= _ADDRESS_LIMIT:
        raise InvalidArgument(
            "spec.length",
            f"region {address:#x}+{length} wraps past the end of the 64-bit address space",
        )
    if USER_SPACE_END <= address < KERNEL_SPACE_START:
        raise InvalidArgument(
            "spec.address",
            f"non-canonical address {address:#x}: with 48-bit virtual addresses it must be "
            f"below {USER_SPACE_END:#x} (user) or at or above {KERNEL_SPACE_START:#x} (kernel)",
        )
    if kernel:
        if address < USER_SPACE_END:
            raise InvalidArgument(
                "spec.address",
                f"user address {address:#x} in kernel scope "
                f"(kernel space starts at {KERNEL_SPACE_START:#x})",
            )
        return
    if address >= KERNEL_SPACE_START:
        raise InvalidArgument(
            "spec.address",
            f"kernel address {address:#x} in user scope (user space ends at {USER_SPACE_END:#x})",
        )
    if last >= USER_SPACE_END:
        raise InvalidArgument(
            "spec.address",
            f"region {address:#x}..{last:#x} is not below the top of user space "
            f"{USER_SPACE_END:#x}",
        )


def _priv(kernel: bool) -> int:
    return _PRIV_EL1 if kernel else _PRIV_EL0


def _kernel_of(priv: int, what: str) -> bool:
    if priv == _PRIV_EL1:
        return True
    if priv == _PRIV_EL0:
        return False
    raise ValueError(f"{what} {priv:#04b} is neither EL0-only (0b10) nor EL1-only (0b01)")


def encode_bcr(chunk: Chunk, *, kernel: bool) -> tuple[int, int]:
    """(DBGBVR, DBGBCR) for an exec chunk: unlinked address match, A64, EL0 or EL1."""
    if chunk.access is not Access.EXEC or chunk.length != _INSN:
        raise ValueError(f"a breakpoint needs an exec chunk of length 4, got {chunk}")
    if chunk.address % _INSN or not 0 <= chunk.address < _ADDRESS_LIMIT:
        raise ValueError(f"breakpoint address {chunk.address:#x} is not 4-byte aligned")
    # BT (bits 23:20) = 0b0000 unlinked address match; HMC, SSC and LBN stay 0.
    bcr = _E | (_priv(kernel) << _PRIV_SHIFT) | (_BAS_A64 << _BCR_BAS_SHIFT)
    return chunk.address, bcr


def decode_bcr(bvr: int, bcr: int) -> tuple[Chunk, bool] | None:
    """The exec chunk and kernel flag ``encode_bcr`` produced, or None if disabled.

    Raises ValueError for any setting ``encode_bcr`` never makes (linked or
    context breakpoints, AArch32 byte selects, other privilege modes).
    """
    if not bcr & _E:
        return None
    kernel = _kernel_of((bcr >> _PRIV_SHIFT) & 0b11, "BCR.PMC")
    if (bcr >> _BCR_BAS_SHIFT) & 0xF != _BAS_A64:
        raise ValueError(f"BCR.BAS {(bcr >> _BCR_BAS_SHIFT) & 0xF:#06b} is not A64 (0b1111)")
    if (bcr >> _BT_SHIFT) & 0xF:
        raise ValueError(f"BCR.BT {(bcr >> _BT_SHIFT) & 0xF:#06b} is not an unlinked address match")
    chunk = Chunk(EXEC_POOL, bvr, _INSN, Access.EXEC)
    if encode_bcr(chunk, kernel=kernel) != (bvr, bcr):
        raise ValueError(f"BCR {bcr:#x} / BVR {bvr:#x} set fields hwbkpt does not use")
    return chunk, kernel


def encode_wcr(chunk: Chunk, *, kernel: bool) -> tuple[int, int]:
    """(DBGWVR, DBGWCR) for a data chunk inside one doubleword, EL0 or EL1."""
    lsc = _LSC_OF.get(chunk.access)
    if lsc is None:
        raise ValueError(f"a watchpoint cannot watch {chunk.access.value}")
    if not 0 <= chunk.address < _ADDRESS_LIMIT:
        raise ValueError(f"address {chunk.address:#x} is not a 64-bit address")
    offset = chunk.address % _DWORD
    if not 1 <= chunk.length <= _DWORD - offset:
        raise ValueError(
            f"chunk {chunk.address:#x}+{chunk.length} does not lie inside one aligned doubleword"
        )
    bas = ((1 << chunk.length) - 1) << offset
    # MASK (bits 28:24) = 0: no address-range masking; BAS selects the bytes instead.
    wcr = _E | (_priv(kernel) << _PRIV_SHIFT) | (lsc << _LSC_SHIFT) | (bas << _WCR_BAS_SHIFT)
    return chunk.address - offset, wcr


def decode_wcr(wvr: int, wcr: int) -> tuple[Chunk, bool] | None:
    """The data chunk and kernel flag ``encode_wcr`` produced, or None if disabled.

    Raises ValueError for settings ``encode_wcr`` never makes (masking, linking,
    non-contiguous byte selects, a WVR that is not doubleword aligned).
    """
    if not wcr & _E:
        return None
    kernel = _kernel_of((wcr >> _PRIV_SHIFT) & 0b11, "WCR.PAC")
    lsc = (wcr >> _LSC_SHIFT) & 0b11
    if lsc not in _ACCESS_OF:
        raise ValueError("WCR.LSC 0b00 matches no access")
    if wvr % _DWORD:
        raise ValueError(f"WVR {wvr:#x} is not doubleword aligned")
    if (wcr >> _MASK_SHIFT) & 0x1F:
        raise ValueError(f"WCR.MASK {(wcr >> _MASK_SHIFT) & 0x1F} is not 0")
    bas = (wcr >> _WCR_BAS_SHIFT) & 0xFF
    if not bas:
        raise ValueError("WCR.BAS selects no byte")
    offset = (bas & -bas).bit_length() - 1
    length = bas.bit_count()
    if bas >> offset != (1 << length) - 1:
        raise ValueError(f"WCR.BAS {bas:#010b} does not select contiguous bytes")
    chunk = Chunk(DATA_POOL, wvr + offset, length, _ACCESS_OF[lsc])
    if encode_wcr(chunk, kernel=kernel) != (wvr, wcr):
        raise ValueError(f"WCR {wcr:#x} sets fields hwbkpt does not use")
    return chunk, kernel


def watch_hit_slot(far: int, slots: Sequence[Chunk | None]) -> int | None:
    """The index of the watchpoint that most likely fired for a fault address.

    The FAR of a watchpoint exception need not be a watched byte: it may be the
    lowest address of the access (an STP or a DC ZVA that overlaps the watched
    bytes from below). So, as Linux does, a slot containing ``far`` wins (the
    lowest index if several do), otherwise the nearest one. None only when no
    data slot is armed, i.e. the trap is not a watchpoint of ours.
    """
    best: int | None = None
    best_distance = 0
    for i, chunk in enumerate(slots):
        if chunk is None or chunk.access is Access.EXEC:
            continue
        if far < chunk.address:
            distance = chunk.address - far
        elif far >= chunk.address + chunk.length:
            distance = far - (chunk.address + chunk.length - 1)
        else:
            return i
        if best is None or distance < best_distance:
            best, best_distance = i, distance
    return best
