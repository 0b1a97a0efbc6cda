"""make_hit builds exactly what HitReport's constructor builds (pure: runs anywhere)."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from hwbkptd.arch.ptrace import hits
from hwbkptd.core.mechanism import HitReport
from hwbkptd.core.model import Access


def test_the_fastest_builder_is_in_use_and_checked() -> None:
    # A frozen HitReport: the descriptor-based builder, unless the class changed shape
    # (then make_hit falls back to the constructor, still correct, slower: this says so,
    # so the trap path's cost does not creep up unnoticed). Not frozen: the constructor.
    frozen = HitReport.__hash__ is not None
    assert (hits.make_hit is not hits._by_init) is frozen
    assert hits.check(hits.make_hit)


@given(
    st.integers(1, 2**22),
    st.integers(1, 2**22),
    st.sampled_from(["dr", "exec", "data"]),
    st.integers(0, 7),
    st.integers(0, 2**40),
    st.integers(-1, 2**64 - 1),
    st.sampled_from([None, *Access]),
    st.lists(st.binary(max_size=9), max_size=3).map(tuple),
    st.booleans(),
)
def test_make_hit_equals_the_constructor(
    pid: int,
    tid: int,
    pool: str,
    index: int,
    generation: int,
    address: int,
    access: Access | None,
    values: tuple[bytes, ...],
    halted: bool,
) -> None:
    args = (pid, tid, pool, index, generation, address - 1, address, 12345, access, values, halted)
    made = hits.make_hit(*args)
    built = HitReport(
        pid,
        tid,
        pool,
        index,
        generation,
        address - 1,
        address,
        12345,
        access=access,
        values=values,
        halted=halted,
    )
    assert made == built
    assert dataclasses.astuple(made) == dataclasses.astuple(built)
    if HitReport.__hash__ is not None:  # frozen
        assert hash(made) == hash(built)
