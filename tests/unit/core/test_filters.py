"""Hit filters and their validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwbkptd.core.errors import InvalidArgument
from hwbkptd.core.filters import MAX_FILTER_COUNT, passes, reached_stop, validate_filter
from hwbkptd.core.model import Access, Filter


def test_no_filter_passes_everything() -> None:
    assert passes(Filter(), hit_count=1, value=b"\x01", old_value=b"\x01")


def test_ignore_first_counts_attributed_hits() -> None:
    flt = Filter(ignore_first=2)
    assert [passes(flt, hit_count=n, value=b"", old_value=b"") for n in (1, 2, 3)] == [
        False,
        False,
        True,
    ]


def test_changed_only_and_equals() -> None:
    assert not passes(Filter(changed_only=True), hit_count=1, value=b"\x01", old_value=b"\x01")
    assert passes(Filter(changed_only=True), hit_count=1, value=b"\x02", old_value=b"\x01")
    assert passes(Filter(equals=b"\x02"), hit_count=1, value=b"\x02", old_value=b"\x02")
    assert not passes(Filter(equals=b"\x02"), hit_count=1, value=b"\x03", old_value=b"\x02")
    both = Filter(changed_only=True, equals=b"\x02")
    assert not passes(both, hit_count=1, value=b"\x02", old_value=b"\x02")


def test_stop_after() -> None:
    assert not reached_stop(Filter(), 10**6)
    assert not reached_stop(Filter(stop_after=2), 1)
    assert reached_stop(Filter(stop_after=2), 2)


@pytest.mark.parametrize(
    ("flt", "access", "field"),
    [
        (Filter(equals=b"\x01"), Access.WRITE, "spec.filter.equals"),
        (Filter(changed_only=True), Access.EXEC, "spec.filter.changed_only"),
        (Filter(equals=b"\x01" * 8), Access.EXEC, "spec.filter.equals"),
        (Filter(ignore_first=-1), Access.WRITE, "spec.filter.ignore_first"),
        (Filter(stop_after=MAX_FILTER_COUNT + 1), Access.WRITE, "spec.filter.stop_after"),
    ],
)
def test_validation_names_the_field(flt: Filter, access: Access, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_filter(flt, length=8, access=access, field="spec.filter")
    assert err.value.field == field


def test_valid_filters_pass_validation() -> None:
    validate_filter(
        Filter(changed_only=True, equals=b"\x00" * 4, ignore_first=3, stop_after=9),
        length=4,
        access=Access.READ_WRITE,
        field="filter",
    )
    validate_filter(Filter(ignore_first=1), length=1, access=Access.EXEC, field="filter")


@given(st.integers(0, 50), st.integers(1, 60))
def test_ignore_first_is_exactly_the_first_n(n: int, count: int) -> None:
    assert passes(Filter(ignore_first=n), hit_count=count, value=b"", old_value=b"") == (count > n)
