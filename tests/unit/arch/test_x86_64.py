"""x86_64 arch: validation and splitting, DR7/DR6 known answers, round trips."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwbkptd.arch.x86_64 import (
    TASK_SIZE_MAX,
    X86_64,
    debugreg_offset,
    decode_dr6,
    decode_dr7,
    dr6_single_step,
    encode_dr7,
)
from hwbkptd.core.arch_port import Arch
from hwbkptd.core.errors import InvalidArgument
from hwbkptd.core.model import Access, Chunk

ARCH: Arch = X86_64()
POOLS = {"dr": 4}
BIG = {"dr": 16}
W, RW, X = Access.WRITE, Access.READ_WRITE, Access.EXEC


def split(
    address: int,
    length: int,
    access: Access = W,
    *,
    kernel: bool = False,
    pools: dict[str, int] | None = None,
) -> tuple[Chunk, ...]:
    return ARCH.split(address, length, access, kernel=kernel, pools=pools or POOLS)


def pieces(chunks: tuple[Chunk, ...]) -> list[tuple[int, int]]:
    return [(c.address, c.length) for c in chunks]


def bad(field: str, *args: object, **kwargs: object) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        split(*args, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    return info.value


# --- attributes -------------------------------------------------------------------------------


def test_attributes() -> None:
    assert (ARCH.name, ARCH.max_region_length, ARCH.read_emulated, ARCH.exec_length) == (
        "x86_64",
        32,
        True,
        1,
    )
    assert {ARCH.pool_for(a) for a in Access} == {"dr"}


# --- splitting: examples ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "length", "expected"),
    [
        (0x1000, 8, [(0x1000, 8)]),
        (0x1000, 1, [(0x1000, 1)]),
        (0x1000, 3, [(0x1000, 2), (0x1002, 1)]),
        (0x1001, 8, [(0x1001, 1), (0x1002, 2), (0x1004, 4), (0x1008, 1)]),
        (0x1003, 6, [(0x1003, 1), (0x1004, 4), (0x1008, 1)]),
        (0x1004, 12, [(0x1004, 4), (0x1008, 8)]),
        (0x1000, 32, [(0x1000, 8), (0x1008, 8), (0x1010, 8), (0x1018, 8)]),
        (0x1006, 4, [(0x1006, 2), (0x1008, 2)]),
    ],
)
def test_split_examples(address: int, length: int, expected: list[tuple[int, int]]) -> None:
    chunks = split(address, length)
    assert pieces(chunks) == expected
    assert all(c.pool == "dr" for c in chunks)
    assert all(c.access is W for c in chunks)


def test_read_is_armed_as_read_write() -> None:
    assert split(0x1000, 4, Access.READ) == (Chunk("dr", 0x1000, 4, RW),)
    assert split(0x1000, 4, RW) == (Chunk("dr", 0x1000, 4, RW),)


@pytest.mark.parametrize("length", [0, 1])
def test_exec_is_one_byte_at_any_address(length: int) -> None:
    assert split(0x401123, length, X) == (Chunk("dr", 0x401123, 1, X),)


@pytest.mark.parametrize("length", [2, 4, 8, 15, -1])
def test_exec_other_length_refused(length: int) -> None:
    err = bad("spec.length", 0x401000, length, X)
    assert "x86 exec breakpoints are 1 byte" in err.reason
    assert str(length) in err.reason


@pytest.mark.parametrize("length", [0, 33, 64, -8])
def test_data_length_out_of_range(length: int) -> None:
    err = bad("spec.length", 0x1000, length)
    assert "1 to 32" in err.reason


def test_unsplittable() -> None:
    err = bad("spec.length", 0x1001, 32)
    assert err.reason == "unsplittable: region needs 7 slots, the pool has 4"
    err = bad("spec.length", 0x1001, 4, pools={"dr": 2})
    assert err.reason == "unsplittable: region needs 3 slots, the pool has 2"
    # The same region fits a larger pool.
    assert len(split(0x1001, 32, pools={"dr": 7})) == 7


@pytest.mark.parametrize(
    ("address", "kernel"),
    [
        (0x0000_8000_0000_0000, False),
        (0x0000_8000_0000_0000, True),
        (0xFFFF_7FFF_FFFF_FFFF, True),
        (0x8000_0000_0000_0000, True),
        (0x1234_5678_0000_0000, False),
    ],
)
def test_non_canonical(address: int, kernel: bool) -> None:
    err = bad("spec.address", address, 8, kernel=kernel)
    assert "non-canonical" in err.reason
    assert hex(address) in err.reason


def test_kernel_address_in_user_scope() -> None:
    err = bad("spec.address", 0xFFFF_FFFF_8100_0000, 8, kernel=False)
    assert "kernel address" in err.reason
    assert "in user scope" in err.reason


def test_user_address_in_kernel_scope() -> None:
    err = bad("spec.address", 0x7FFF_0000_1000, 8, kernel=True)
    assert "user address" in err.reason
    assert "in kernel scope" in err.reason


def test_user_region_must_end_below_task_size_max() -> None:
    assert pieces(split(TASK_SIZE_MAX - 8, 8)) == [(TASK_SIZE_MAX - 8, 8)]
    err = bad("spec.address", TASK_SIZE_MAX - 8, 16)
    assert "0x7ffffffff000" in err.reason
    bad("spec.address", TASK_SIZE_MAX, 1)
    # The guard page and the rest of the lower half up to 2^47 are not user space.
    bad("spec.address", 0x7FFF_FFFF_FFF8, 8)


def test_kernel_region_edges() -> None:
    assert pieces(split(0xFFFF_8000_0000_0000, 8, kernel=True)) == [(0xFFFF_8000_0000_0000, 8)]
    top = 0xFFFF_FFFF_FFFF_FFF8
    assert pieces(split(top, 8, kernel=True)) == [(top, 8)]
    err = bad("spec.length", top, 16, kernel=True)
    assert "wraps" in err.reason


@pytest.mark.parametrize("address", [-1, 1 << 64, 1 << 70])
def test_address_outside_64_bits(address: int) -> None:
    bad("spec.address", address, 1)


def test_access_must_be_an_access() -> None:
    bad("spec.access", 0x1000, 1, "write")


def test_kernel_scope_exec_is_allowed_by_the_arch() -> None:
    # Whether the kernel arms it is the mechanism's business (FAILED_PRECONDITION there).
    assert split(0xFFFF_FFFF_8100_0000, 0, X, kernel=True) == (
        Chunk("dr", 0xFFFF_FFFF_8100_0000, 1, X),
    )


# --- splitting: properties --------------------------------------------------------------------


@functools.cache
def min_pieces(start: int, end: int) -> int:
    """Brute force: fewest naturally aligned 1/2/4/8-byte pieces tiling [start, end)."""
    if start == end:
        return 0
    return 1 + min(
        min_pieces(start + s, end) for s in (1, 2, 4, 8) if start % s == 0 and start + s <= end
    )


user_addresses = st.integers(0, TASK_SIZE_MAX - 33)
kernel_addresses = st.integers(0xFFFF_8000_0000_0000, (1 << 64) - 33)
lengths = st.integers(1, 32)


@given(
    st.one_of(user_addresses.map(lambda a: (a, False)), kernel_addresses.map(lambda a: (a, True))),
    lengths,
    st.sampled_from([W, RW, Access.READ]),
)
def test_split_properties(where: tuple[int, bool], length: int, access: Access) -> None:
    address, kernel = where
    chunks = split(address, length, access, kernel=kernel, pools=BIG)
    at = address
    for c in chunks:
        assert c.address == at  # contiguous, in order, hence disjoint
        assert c.length in (1, 2, 4, 8)
        assert c.address % c.length == 0
        assert c.pool == "dr"
        assert c.access is (RW if access is Access.READ else access)
        at += c.length
    assert at == address + length  # covers exactly
    # The minimum depends only on the address modulo 8 and the length.
    base = address % 8
    assert len(chunks) == min_pieces(base, base + length)


@given(user_addresses, lengths)
def test_unsplittable_exactly_when_more_than_the_pool(address: int, length: int) -> None:
    needed = len(split(address, length, pools=BIG))
    for size in range(1, 9):
        if needed <= size:
            assert len(split(address, length, pools={"dr": size})) == needed
        else:
            with pytest.raises(InvalidArgument, match="unsplittable"):
                split(address, length, pools={"dr": size})


# --- DR7 known answers (Intel SDM vol. 3, DR7: L_i bit 2i, R/W_i bits 16+4i, LEN_i 18+4i) -----


def c(access: Access, length: int, address: int = 0x1000) -> Chunk:
    return Chunk("dr", address, length, access)


@pytest.mark.parametrize(
    ("slots", "dr7"),
    [
        ([], 0x0),
        ([None, None, None, None], 0x0),
        # L0 | RW0=01 (bit 16) | LEN0=10 (bit 19) | LE
        ([c(W, 8)], 0x0009_0101),
        # L3 (bit 6) | RW3=00 | LEN3=00 | LE
        ([None, None, None, c(X, 1, 0x401123)], 0x0000_0140),
        # L1 (bit 2) | RW1=11 (bits 20,21) | LEN1=11 (bits 22,23) | LE
        ([None, c(RW, 4)], 0x00F0_0104),
        # L2 (bit 4) | RW2=01 (bit 24) | LEN2=01 (bit 26) | LE
        ([None, None, c(W, 2)], 0x0500_0110),
        # L1 | RW1=01 | LEN1=00 | LE
        ([None, c(W, 1, 0x1001)], 0x0010_0104),
        # mix: slot 1 rw 8 (nibble 1011), slot 3 write 1 (nibble 0001)
        ([None, c(RW, 8), None, c(W, 1)], 0x10B0_0144),
        # all four: write 8 (1001), rw 4 (1111), write 2 (0101), exec (0000)
        ([c(W, 8), c(RW, 4), c(W, 2), c(X, 1)], 0x05F9_0155),
        # four rw 8
        ([c(RW, 8, 0x1000 + 8 * i) for i in range(4)], 0xBBBB_0155),
    ],
)
def test_encode_dr7_known_answers(slots: list[Chunk | None], dr7: int) -> None:
    assert encode_dr7(slots) == dr7


@pytest.mark.parametrize(
    "slots",
    [
        [c(Access.READ, 4)],  # no read-only watch on x86
        [c(W, 3)],
        [c(W, 16)],
        [c(X, 4)],
        [c(W, 8, 0x1004)],  # misaligned
        [None, None, None, None, c(W, 1)],  # five slots
    ],
)
def test_encode_dr7_rejects(slots: list[Chunk | None]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        encode_dr7(slots)


@pytest.mark.parametrize(
    ("dr7", "expected"),
    [
        (0x0, (None, None, None, None)),
        (0x0000_0100, (None, None, None, None)),  # LE alone enables nothing
        (0x0000_0400, (None, None, None, None)),  # bit 10 reads as 1 on real hardware
        (0x05F9_0155, ((W, 8), (RW, 4), (W, 2), (X, 1))),
        (0x0001_0002, ((W, 1), None, None, None)),  # a global enable counts too
        (0xBBBB_0000, (None, None, None, None)),  # fields without enables are ignored
        (0x10B0_0144, (None, (RW, 8), None, (W, 1))),
    ],
)
def test_decode_dr7_known_answers(dr7: int, expected: tuple[object, ...]) -> None:
    assert decode_dr7(dr7) == expected


@pytest.mark.parametrize("dr7", [0x0002_0001, 0x0004_0001, 0x00C0_0004])
def test_decode_dr7_rejects_io_and_exec_with_length(dr7: int) -> None:
    # 0x00C00004: slot 1 exec (RW 00) with LEN 11.
    with pytest.raises(ValueError):  # noqa: PT011
        decode_dr7(dr7)


def slot_strategy() -> st.SearchStrategy[Chunk | None]:
    data = st.tuples(
        st.sampled_from([W, RW]), st.sampled_from([1, 2, 4, 8]), st.integers(0, 1 << 40)
    )
    return st.one_of(
        st.none(),
        st.integers(0, 1 << 40).map(lambda a: c(X, 1, a)),
        data.map(lambda t: c(t[0], t[1], t[2] * t[1])),
    )


@given(st.lists(slot_strategy(), max_size=4))
def test_dr7_round_trip(slots: list[Chunk | None]) -> None:
    decoded = decode_dr7(encode_dr7(slots))
    padded = [*slots, *[None] * (4 - len(slots))]
    assert decoded == tuple(None if s is None else (s.access, s.length) for s in padded)


@given(st.lists(slot_strategy(), min_size=4, max_size=4))
def test_dr7_uses_only_local_enables_and_le(slots: list[Chunk | None]) -> None:
    value = encode_dr7(slots)
    assert value & 0xAA == 0  # no global enables
    assert value & 0xFE00 == 0  # GE, GD and reserved bits clear
    assert bool(value & 0x100) == any(s is not None for s in slots)


# --- DR6 and the user area -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dr6", "hits", "step"),
    [
        (0xFFFF_0FF0, (), False),  # the idle value: reserved bits read as 1
        (0xFFFF_0FF1, (0,), False),
        (0xFFFF_0FF9, (0, 3), False),
        (0x0000_000F, (0, 1, 2, 3), False),
        (0xFFFF_4FF0, (), True),
        (0x0000_4002, (1,), True),
    ],
)
def test_dr6(dr6: int, hits: tuple[int, ...], step: bool) -> None:
    assert decode_dr6(dr6) == hits
    assert dr6_single_step(dr6) is step


def test_debugreg_offsets() -> None:
    # offsetof(struct user, u_debugreg) = 848 on x86_64 glibc (checked with gcc).
    offsets = [0x350, 0x358, 0x360, 0x368, 0x370, 0x378, 0x380, 0x388]
    assert [debugreg_offset(i) for i in range(8)] == offsets
    for index in (-1, 8):
        with pytest.raises(ValueError, match="0 to 7"):
            debugreg_offset(index)
