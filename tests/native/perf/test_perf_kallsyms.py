"""Kernel symbols on this machine's /proc/kallsyms."""

from __future__ import annotations

import pytest

from hwbkptd.arch.perf.kallsyms import Kallsyms
from hwbkptd.core.errors import NotFound

pytestmark = [pytest.mark.native, pytest.mark.usefixtures("kernel_root")]


@pytest.fixture(scope="module")
def ksyms() -> Kallsyms:
    return Kallsyms.load()


def test_init_stack_resolves_through_its_linker_marker(ksyms: Kallsyms) -> None:
    assert not ksyms.hidden
    assert len(ksyms) > 10_000
    start = ksyms.resolve("__start_init_stack")
    assert start >= 0xFFFF_8000_0000_0000
    assert ksyms.resolve("init_stack") == start
    assert ksyms.resolve("init_stack+0x10") == start + 0x10


def test_unknown_names_are_not_found(ksyms: Kallsyms) -> None:
    with pytest.raises(NotFound, match="no_such_kernel_symbol") as err:
        ksyms.resolve("no_such_kernel_symbol")
    assert err.value.field == "spec.symbol"


def test_text_addresses_symbolize_back(ksyms: Kallsyms) -> None:
    vfs_read = ksyms.resolve("vfs_read")
    assert ksyms.symbolize(vfs_read) == "vfs_read+0x0"
    assert ksyms.symbolize(vfs_read + 0x1C) == "vfs_read+0x1c"
