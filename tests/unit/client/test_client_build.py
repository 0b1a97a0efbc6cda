"""hwbkpt._build: instances built positionally equal, hash and freeze like __init__'s."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwbkpt import models as m
from hwbkpt._build import positional_builder

new_hit = positional_builder(m.Hit)


@given(
    ints=st.lists(st.integers(0, 2**63), min_size=7, max_size=7),
    value=st.binary(max_size=8),
    flags=st.tuples(st.booleans(), st.booleans()),
    symbol=st.text(max_size=8),
)
def test_a_built_hit_is_the_constructed_one(
    ints: list[int], value: bytes, flags: tuple[bool, bool], symbol: str
) -> None:
    pid, tid, cpu, ip, address, count, gen = ints
    args = (pid, tid, cpu, ip, address, m.Access.WRITE, value, b"", count, gen, *flags)
    args += (symbol, (m.Frame(ip, symbol),))
    args += (f"{symbol}.c:1", symbol, symbol)  # ip_line, address_symbol, member (issue 13)
    built, made = new_hit(*args), m.Hit(*args)
    assert built == made
    assert hash(built) == hash(made)
    assert repr(built) == repr(made)


def test_built_instances_stay_frozen_and_events_too() -> None:
    when = datetime(2026, 11, 25, tzinfo=UTC)
    hit = m.Hit(1, 2, 0, 3, 4, None, b"", b"", 1, 1)
    event = positional_builder(m.Event)(7, when, 3, hit)
    assert event == m.Event(7, when, 3, hit)
    assert event.kind == "hit"
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.seq = 8  # type: ignore[misc]


def test_only_frozen_slotted_dataclasses_without_post_init() -> None:
    @dataclasses.dataclass(slots=True)
    class Loose:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None: ...

    for cls in (Loose, Checked, int):
        with pytest.raises(TypeError):
            positional_builder(cls)
