"""Kallsyms parsing, lookup and symbolization on fixture text (no /proc)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwbkptd.arch.perf.kallsyms import Kallsyms, parse_location
from hwbkptd.core.errors import FailedPrecondition, InvalidArgument, NotFound

FIXTURE = """\
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81000000 T srso_alias_untrain_ret
ffffffff81000100 t helper
ffffffff81000200 T vfs_read
ffffffff81000300 t dup_name
ffffffff81000400 T dup_name
ffffffff81000500 t only_local
ffffffff81000600 t only_local
ffffffff81000700 T _etext
ffffffff82400000 D __start_rodata
ffffffff83000000 D __start_init_stack
ffffffffc0201000 t ftrace_trampoline\t[__builtin__ftrace]
ffffffffc0300000 t mod_func\t[mymod]
ffffffffc0300100 T vfs_read\t[othermod]
garbage line
"""


@pytest.fixture
def ks() -> Kallsyms:
    return Kallsyms.from_text(FIXTURE)


def test_resolves_names_and_offsets(ks: Kallsyms) -> None:
    assert ks.resolve("vfs_read") == 0xFFFFFFFF81000200  # vmlinux before the module
    assert ks.resolve("vfs_read+0x10") == 0xFFFFFFFF81000210
    assert ks.resolve("vfs_read + 16") == 0xFFFFFFFF81000210
    assert ks.resolve("dup_name") == 0xFFFFFFFF81000400  # global before local
    assert ks.resolve("only_local") == 0xFFFFFFFF81000500
    assert ks.resolve("mod_func") == 0xFFFFFFFFC0300000


def test_a_missing_object_resolves_through_its_start_marker(ks: Kallsyms) -> None:
    assert ks.resolve("init_stack") == 0xFFFFFFFF83000000
    assert ks.resolve("init_stack+0x10") == 0xFFFFFFFF83000010
    assert ks.resolve("__start_init_stack") == 0xFFFFFFFF83000000


def test_unknown_names_are_not_found(ks: Kallsyms) -> None:
    with pytest.raises(NotFound) as err:
        ks.resolve("jiffies")
    assert err.value.field == "spec.symbol"
    assert "jiffies" in err.value.message
    with pytest.raises(NotFound) as err:
        ks.resolve("nope", field="location")
    assert err.value.field == "location"


@pytest.mark.parametrize("bad", ["", "+0x10", "vfs_read+", "vfs_read+0xZZ", "a b", "vfs_read-4"])
def test_malformed_locations_are_invalid(ks: Kallsyms, bad: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        ks.resolve(bad)
    assert err.value.field == "spec.symbol"


def test_candidates_list_every_symbol_of_a_name(ks: Kallsyms) -> None:
    found = ks.candidates("vfs_read")
    assert [(s.address, s.kind, s.module) for s in found] == [
        (0xFFFFFFFF81000200, "T", ""),
        (0xFFFFFFFFC0300100, "T", "othermod"),
    ]
    assert ks.candidates("vfs_rea") == ()  # whole names only
    assert ks.candidates("ftrace_trampoline")[0].module == "__builtin__ftrace"
    assert len(ks) == 15  # the garbage line is not a symbol


def test_parse_location() -> None:
    assert parse_location("foo") == ("foo", 0)
    assert parse_location("foo.cold+0x1f") == ("foo.cold", 0x1F)


def test_symbolize(ks: Kallsyms) -> None:
    assert ks.symbolize(0xFFFFFFFF81000000) == "srso_alias_untrain_ret+0x0"
    assert ks.symbolize(0xFFFFFFFF8100021C) == "vfs_read+0x1c"
    assert ks.symbolize(0xFFFFFFFF81000150) == "helper+0x50"
    assert ks.symbolize(0xFFFFFFFF80000000) == ""  # below all text
    assert ks.symbolize(0xFFFFFFFF81000800) == ""  # past _etext: not code
    assert ks.symbolize(0xFFFFFFFF83000008) == ""  # data markers never name an ip
    assert ks.symbolize(0xFFFFFFFFC0300004) == "mod_func+0x4"
    assert ks.symbolize(0xFFFFFFFF8100021C) == "vfs_read+0x1c"  # cached answer agrees


def test_hidden_addresses_are_a_failed_precondition() -> None:
    hidden = Kallsyms.from_text("0000000000000000 T vfs_read\n0000000000000000 t helper\n")
    assert hidden.hidden
    with pytest.raises(FailedPrecondition, match="kptr_restrict"):
        hidden.resolve("vfs_read")
    assert hidden.symbolize(0x10) == ""


@given(
    starts=st.lists(
        st.integers(0xFFFFFFFF81000000, 0xFFFFFFFF81FFFFFF), min_size=1, max_size=30, unique=True
    ),
    probe=st.integers(0, 0xFFFFFF),
)
def test_symbolize_names_the_closest_symbol_below(starts: list[int], probe: int) -> None:
    text = "".join(f"{a:016x} T f{i}\n" for i, a in enumerate(starts))
    ks = Kallsyms.from_text(text)
    ip = 0xFFFFFFFF81000000 + probe
    below = [(a, i) for i, a in enumerate(starts) if a <= ip]
    if not below:
        assert ks.symbolize(ip) == ""
        return
    address, index = max(below)
    assert ks.symbolize(ip) == f"f{index}+{ip - address:#x}"
    name, _, off = ks.symbolize(ip).partition("+")
    assert ks.resolve(name) + int(off, 16) == ip
