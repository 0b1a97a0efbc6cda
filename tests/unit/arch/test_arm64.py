"""arm64 arch: validation and splitting, BCR/WCR known answers, round trips, hit slots."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwbkptd.arch.arm64 import (
    Arm64,
    decode_bcr,
    decode_wcr,
    encode_bcr,
    encode_wcr,
    watch_hit_slot,
)
from hwbkptd.core.arch_port import Arch
from hwbkptd.core.errors import InvalidArgument
from hwbkptd.core.model import Access, Chunk

ARCH: Arch = Arm64()
POOLS = {"exec": 6, "data": 4}
BIG = {"exec": 16, "data": 16}
R, W, RW, X = Access.READ, Access.WRITE, Access.READ_WRITE, Access.EXEC
USER_END = 1 << 48
KERNEL_START = 0xFFFF_0000_0000_0000


def split(
    address: int,
    length: int,
    access: Access = W,
    *,
    kernel: bool = False,
    pools: dict[str, int] | None = None,
) -> tuple[Chunk, ...]:
    return ARCH.split(address, length, access, kernel=kernel, pools=pools or POOLS)


def bad(field: str, address: int, length: int, access: Access = W, **kw: object) -> str:
    with pytest.raises(InvalidArgument) as info:
        split(address, length, access, **kw)  # type: ignore[arg-type]
    assert info.value.field == field
    return info.value.reason


def test_attributes() -> None:
    assert (ARCH.name, ARCH.max_region_length, ARCH.read_emulated, ARCH.exec_length) == (
        "arm64",
        32,
        False,
        4,
    )
    assert ARCH.pool_for(X) == "exec"
    assert {ARCH.pool_for(a) for a in (R, W, RW)} == {"data"}


# --- splitting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "length", "expected"),
    [
        (0x1000, 8, [(0x1000, 8)]),
        (0x1001, 3, [(0x1001, 3)]),  # one doubleword: one slot (x86 needs two)
        (0x1003, 5, [(0x1003, 5)]),
        (0x1006, 4, [(0x1006, 2), (0x1008, 2)]),
        (0x1000, 32, [(0x1000, 8), (0x1008, 8), (0x1010, 8), (0x1018, 8)]),
        (0x1004, 17, [(0x1004, 4), (0x1008, 8), (0x1010, 5)]),
    ],
)
def test_split_examples(address: int, length: int, expected: list[tuple[int, int]]) -> None:
    chunks = split(address, length)
    assert [(c.address, c.length) for c in chunks] == expected
    assert all(c.pool == "data" for c in chunks)
    assert all(c.access is W for c in chunks)


def test_read_is_native() -> None:
    assert split(0x1000, 4, R) == (Chunk("data", 0x1000, 4, R),)


@pytest.mark.parametrize("length", [0, 4])
def test_exec(length: int) -> None:
    assert split(0x400100, length, X) == (Chunk("exec", 0x400100, 4, X),)
    assert split(0xFFFF_8000_1000_0000, length, X, kernel=True) == (
        Chunk("exec", 0xFFFF_8000_1000_0000, 4, X),
    )


@pytest.mark.parametrize("length", [1, 2, 8, -4])
def test_exec_wrong_length(length: int) -> None:
    assert "4-byte A64 instruction" in bad("spec.length", 0x400100, length, X)


@pytest.mark.parametrize("address", [0x400101, 0x400102, 0x400103])
def test_exec_misaligned(address: int) -> None:
    assert "misaligned" in bad("spec.address", address, 4, X)


@pytest.mark.parametrize("length", [0, 33, -1])
def test_data_length_out_of_range(length: int) -> None:
    assert "1 to 32" in bad("spec.length", 0x1000, length)


def test_unsplittable_counts_the_data_pool() -> None:
    # 0x1007+32 touches five doublewords.
    reason = bad("spec.length", 0x1007, 32)
    assert reason == "unsplittable: region needs 5 slots, the pool has 4"
    assert len(split(0x1007, 32, pools={"exec": 1, "data": 5})) == 5
    # The exec pool size does not matter for data, nor the data pool for exec.
    assert len(split(0x1000, 8, pools={"exec": 0, "data": 1})) == 1
    assert len(split(0x1000, 4, X, pools={"exec": 1, "data": 0})) == 1
    assert "the pool has 0" in bad("spec.length", 0x1000, 4, X, pools={"exec": 0, "data": 4})


@pytest.mark.parametrize(
    ("address", "kernel"),
    [
        (USER_END, False),
        (USER_END, True),
        (KERNEL_START - 8, True),
        (0x8000_0000_0000_0000, False),
    ],
)
def test_non_canonical(address: int, kernel: bool) -> None:
    assert "non-canonical" in bad("spec.address", address, 8, kernel=kernel)


def test_scope_sides() -> None:
    reason = bad("spec.address", 0xFFFF_8000_0000_0000, 8, kernel=False)
    assert "kernel address" in reason
    assert "in user scope" in reason
    reason = bad("spec.address", 0x1000, 8, kernel=True)
    assert "user address" in reason
    assert "in kernel scope" in reason
    # A user region must end below 2^48.
    assert split(USER_END - 8, 8)[0].address == USER_END - 8
    assert "top of user space" in bad("spec.address", USER_END - 8, 16)
    # Kernel space starts at 0xffff000000000000 (not 0xffff8... as on x86).
    assert split(KERNEL_START, 8, kernel=True)[0].address == KERNEL_START
    assert "wraps" in bad("spec.length", (1 << 64) - 8, 16, kernel=True)


@pytest.mark.parametrize("address", [-8, 1 << 64])
def test_address_outside_64_bits(address: int) -> None:
    bad("spec.address", address, 1)


def test_access_must_be_an_access() -> None:
    bad("spec.access", 0x1000, 1, "read")  # type: ignore[arg-type]


@given(
    st.one_of(
        st.integers(0, USER_END - 33).map(lambda a: (a, False)),
        st.integers(KERNEL_START, (1 << 64) - 33).map(lambda a: (a, True)),
    ),
    st.integers(1, 32),
    st.sampled_from([R, W, RW]),
)
def test_split_properties(where: tuple[int, bool], length: int, access: Access) -> None:
    address, kernel = where
    chunks = split(address, length, access, kernel=kernel, pools=BIG)
    at = address
    for c in chunks:
        assert c.address == at
        assert c.address // 8 == (c.address + c.length - 1) // 8  # inside one doubleword
        assert c.pool == "data"
        assert c.access is access
        at += c.length
    assert at == address + length
    assert len(chunks) == (address + length - 1) // 8 - address // 8 + 1  # one per doubleword


# --- BCR / WCR known answers (Arm ARM DBGBCR<n>_EL1 and DBGWCR<n>_EL1) --------------------------
# BCR: E bit 0, PMC bits 2:1, BAS bits 8:5, BT bits 23:20.
# WCR: E bit 0, PAC bits 2:1, LSC bits 4:3, BAS bits 12:5, MASK bits 28:24.


@pytest.mark.parametrize(
    ("address", "kernel", "bvr", "bcr"),
    [
        # E | PMC=0b10 (EL0) << 1 | BAS=0b1111 << 5 = 0x1 | 0x4 | 0x1e0
        (0x0000_0000_0040_0100, False, 0x0000_0000_0040_0100, 0x1E5),
        # E | PMC=0b01 (EL1) << 1 | BAS << 5 = 0x1 | 0x2 | 0x1e0
        (0xFFFF_8000_1000_0000, True, 0xFFFF_8000_1000_0000, 0x1E3),
    ],
)
def test_bcr_known_answers(address: int, kernel: bool, bvr: int, bcr: int) -> None:
    chunk = Chunk("exec", address, 4, X)
    assert encode_bcr(chunk, kernel=kernel) == (bvr, bcr)
    assert decode_bcr(bvr, bcr) == (chunk, kernel)


@pytest.mark.parametrize(
    ("chunk", "kernel", "wvr", "wcr"),
    [
        # write 8 at 0x1000, EL0: E | PAC 0b10<<1 | LSC 0b10<<3 | BAS 0xff<<5
        (Chunk("data", 0x1000, 8, W), False, 0x1000, 0x1FF5),
        # read 1 at 0x1003, EL0: E | 0x4 | LSC 0b01<<3 | BAS 0x08<<5
        (Chunk("data", 0x1003, 1, R), False, 0x1000, 0x10D),
        # write 2 at 0x2006, EL0: E | 0x4 | 0x10 | BAS 0xc0<<5
        (Chunk("data", 0x2006, 2, W), False, 0x2000, 0x1815),
        # rw 4 at ...674, EL1: E | PAC 0b01<<1 | LSC 0b11<<3 | BAS 0xf0<<5
        (
            Chunk("data", 0xFFFF_0000_1234_5674, 4, RW),
            True,
            0xFFFF_0000_1234_5670,
            0x1E1B,
        ),
        # read 3 at 0x7ffd1, EL0: BAS 0b00001110 << 5 = 0x1c0
        (Chunk("data", 0x7FFD1, 3, R), False, 0x7FFD0, 0x1CD),
    ],
)
def test_wcr_known_answers(chunk: Chunk, kernel: bool, wvr: int, wcr: int) -> None:
    assert encode_wcr(chunk, kernel=kernel) == (wvr, wcr)
    assert decode_wcr(wvr, wcr) == (chunk, kernel)


def test_disabled_registers_decode_to_none() -> None:
    assert decode_bcr(0x400100, 0x1E4) is None
    assert decode_wcr(0x1000, 0x1FF4) is None
    assert decode_bcr(0, 0) is None
    assert decode_wcr(0, 0) is None


@pytest.mark.parametrize(
    ("bvr", "bcr"),
    [
        (0x400100, 0x1E7),  # PMC 0b11
        (0x400100, 0x1E1),  # PMC 0b00
        (0x400100, 0x065),  # BAS 0b0011 (AArch32 Thumb)
        (0x400100, 0x1E5 | (0b0001 << 20)),  # BT: linked
        (0x400100, 0x1E5 | (1 << 13)),  # HMC
        (0x400102, 0x1E5),  # misaligned BVR
    ],
)
def test_decode_bcr_rejects(bvr: int, bcr: int) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        decode_bcr(bvr, bcr)


@pytest.mark.parametrize(
    ("wvr", "wcr"),
    [
        (0x1000, 0x1FE5),  # LSC 00
        (0x1000, 0x1FF7),  # PAC 0b11
        (0x1004, 0x1FF5),  # WVR not doubleword aligned
        (0x1000, 0x0015),  # BAS empty
        (0x1000, 0x00B5),  # BAS 0b101: not contiguous
        (0x1000, 0x1FF5 | (3 << 24)),  # MASK
        (0x1000, 0x1FF5 | (1 << 20)),  # WT: linked
    ],
)
def test_decode_wcr_rejects(wvr: int, wcr: int) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        decode_wcr(wvr, wcr)


@pytest.mark.parametrize(
    "chunk",
    [
        Chunk("data", 0x1006, 4, W),  # crosses a doubleword
        Chunk("data", 0x1000, 0, W),
        Chunk("data", 0x1000, 4, X),
    ],
)
def test_encode_wcr_rejects(chunk: Chunk) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        encode_wcr(chunk, kernel=False)


@pytest.mark.parametrize(
    "chunk",
    [Chunk("exec", 0x400102, 4, X), Chunk("exec", 0x400100, 2, X), Chunk("data", 0x4000, 4, W)],
)
def test_encode_bcr_rejects(chunk: Chunk) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        encode_bcr(chunk, kernel=False)


addresses = st.one_of(st.integers(0, USER_END - 1), st.integers(KERNEL_START, (1 << 64) - 1))


@given(addresses.map(lambda a: a & ~3), st.booleans())
def test_bcr_round_trip(address: int, kernel: bool) -> None:
    chunk = Chunk("exec", address, 4, X)
    assert decode_bcr(*encode_bcr(chunk, kernel=kernel)) == (chunk, kernel)


@st.composite
def data_chunks(draw: st.DrawFn) -> Chunk:
    base = draw(addresses) & ~7
    offset = draw(st.integers(0, 7))
    length = draw(st.integers(1, 8 - offset))
    return Chunk("data", base + offset, length, draw(st.sampled_from([R, W, RW])))


@given(data_chunks(), st.booleans())
def test_wcr_round_trip(chunk: Chunk, kernel: bool) -> None:
    wvr, wcr = encode_wcr(chunk, kernel=kernel)
    assert wvr % 8 == 0
    bas = (wcr >> 5) & 0xFF
    watched = {wvr + i for i in range(8) if bas >> i & 1}
    assert watched == set(range(chunk.address, chunk.address + chunk.length))
    assert decode_wcr(wvr, wcr) == (chunk, kernel)


@given(
    st.integers(0, USER_END - 33),
    st.integers(1, 32),
    st.sampled_from([R, W, RW]),
    st.data(),
)
def test_split_chunks_encode_and_hit_their_slot(
    address: int, length: int, access: Access, data: st.DataObject
) -> None:
    chunks = split(address, length, access, pools=BIG)
    for chunk in chunks:
        assert decode_wcr(*encode_wcr(chunk, kernel=False)) == (chunk, False)
    byte = data.draw(st.integers(address, address + length - 1))
    index = watch_hit_slot(byte, chunks)
    assert index is not None
    hit = chunks[index]
    assert hit.address <= byte < hit.address + hit.length


# --- watch_hit_slot ---------------------------------------------------------------------------


def test_watch_hit_slot() -> None:
    slots: list[Chunk | None] = [
        None,
        Chunk("data", 0x1000, 8, W),
        Chunk("data", 0x2004, 2, RW),
        Chunk("exec", 0x2000, 4, X),  # a breakpoint never explains a watchpoint exception
    ]
    assert watch_hit_slot(0x1003, slots) == 1
    assert watch_hit_slot(0x1007, slots) == 1
    assert watch_hit_slot(0x2005, slots) == 2
    # An STP or DC ZVA reports its lowest address, below the watched bytes: nearest wins.
    assert watch_hit_slot(0x2000, slots) == 2
    assert watch_hit_slot(0x1008, slots) == 1
    assert watch_hit_slot(0x2006, slots) == 2
    assert watch_hit_slot(0x2000, [None, Chunk("exec", 0x2000, 4, X)]) is None
    assert watch_hit_slot(0x2000, []) is None


def test_watch_hit_slot_overlap_prefers_lowest_index() -> None:
    slots: list[Chunk | None] = [Chunk("data", 0x1004, 4, W), Chunk("data", 0x1000, 8, RW)]
    assert watch_hit_slot(0x1005, slots) == 0
    assert watch_hit_slot(0x1001, slots) == 1
