"""hwbkptd.names.locations: every form a location string takes (issue 13), known answers."""

from __future__ import annotations

import pytest

from hwbkptd.core.errors import InvalidArgument
from hwbkptd.names.locations import Location, parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0x401136", Location("0x401136", "address", address=0x401136)),
        ("4198710", Location("4198710", "address", address=4198710)),
        ("counter", Location("counter", "symbol", name="counter")),
        ("main+0x10", Location("main+0x10", "symbol", name="main", offset=0x10)),
        ("main + 16", Location("main + 16", "symbol", name="main", offset=16)),
        (
            "libc.so.6!environ",
            Location("libc.so.6!environ", "symbol", module="libc.so.6", name="environ"),
        ),
        ("named.c:42", Location("named.c:42", "line", file="named.c", line=42)),
        ("src/a.cc:7", Location("src/a.cc:7", "line", file="src/a.cc", line=7)),
        ("&cfg", Location("&cfg", "symbol", name="cfg", address_of=True)),
        (
            "&cfg.limit",
            Location("&cfg.limit", "symbol", name="cfg", path=("limit",), address_of=True),
        ),
        (
            "&table[3]",
            Location("&table[3]", "symbol", name="table", path=(3,), address_of=True),
        ),
        ("cfg.tag[2]", Location("cfg.tag[2]", "symbol", name="cfg", path=("tag", 2))),
        ("twin.0", Location("twin.0", "symbol", name="twin.0")),
        (
            "lib.so!&x.y",
            Location("lib.so!&x.y", "symbol", module="lib.so", name="x", path=("y",),
                     address_of=True),
        ),
    ],
)  # fmt: skip
def test_item1_location_forms(text: str, expected: Location) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "a b", "&", "cfg.", "x[", "f.c:0", "!x", "1+2"])
def test_item6_malformed_locations_name_the_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse(text)
    assert err.value.field == "spec.symbol"


def test_item1_a_member_needs_a_type() -> None:
    assert parse("&cfg.limit").needs_type
    assert not parse("&cfg").needs_type
