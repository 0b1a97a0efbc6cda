"""hwbkptd.arch.sim_memory: the simulated machine's address spaces."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwbkptd.arch.sim_memory import SimMemory, SparseMemory
from hwbkptd.core.errors import InvalidArgument, NotFound

KSTART = 0xFFFF_8000_0000_0000


@given(
    writes=st.lists(
        st.tuples(st.integers(0, 3 * 4096), st.binary(min_size=1, max_size=300)), max_size=20
    )
)
def test_sparse_memory_behaves_like_a_flat_bytearray(writes: list[tuple[int, bytes]]) -> None:
    flat = bytearray(4 * 4096 + 300)
    mem = SparseMemory()
    for at, data in writes:
        flat[at : at + len(data)] = data
        mem.write(at, data)
    assert mem.read(0, len(flat)) == bytes(flat)
    assert mem.read(4095, 3) == bytes(flat[4095:4098])


def test_item10_each_process_has_its_own_space_and_the_kernel_one_is_shared() -> None:
    mem = SimMemory(KSTART)
    mem.add_process(1)
    mem.add_process(2)
    mem.write(1, 0x10, b"\x05")
    mem.write(1, KSTART + 8, b"\x07")
    assert mem.read(2, 0x10, 1) == b"\x00"
    assert mem.read(2, KSTART + 8, 1) == b"\x07"
    assert mem.read(1, 0x10, 0) == b""
    mem.add_process(1)  # exec: a fresh space
    assert mem.read(1, 0x10, 1) == b"\x00"
    mem.drop_process(1)
    with pytest.raises(NotFound):
        mem.read(1, 0x10, 1)
    with pytest.raises(InvalidArgument, match="64 bits"):
        mem.write(2, (1 << 64) - 1, b"\x00\x00")
