"""hwbkptd.names.elf_image on the test programs and libc: symbols, build-id, debug files."""

from __future__ import annotations

from pathlib import Path

import pytest
from c_programs import nm_address
from elftools.elf.elffile import ELFFile

from hwbkptd.names.elf_image import ElfImage, debug_file_for, read_symbols

LIBC = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")


@pytest.mark.parametrize("name", ["named", "named-pie", "named_lib"])
def test_item1_fast_and_pyelftools_symbol_tables_agree(c_bins: dict[str, str], name: str) -> None:
    with open(c_bins[name], "rb") as f:
        elf = ELFFile(f)
        fast, fast_symtab = read_symbols(elf)
        slow, slow_symtab = read_symbols(elf, fast=False)
    assert fast_symtab == slow_symtab
    assert sorted(fast, key=repr) == sorted(slow, key=repr)


def test_item1_an_image_knows_its_symbols(c_bins: dict[str, str]) -> None:
    image = ElfImage.load(c_bins["named"])
    assert not image.is_pie
    assert image.has_symtab
    assert image.own_dwarf
    assert len(image.build_id) == 40
    (counter,) = image.lookup("counter")
    assert (counter.value, counter.size, counter.kind) == (
        nm_address(c_bins["named"], "counter"),
        8,
        "object",
    )
    assert image.containing(counter.value + 3) == (counter, 3)
    pie = ElfImage.load(c_bins["named-pie"])
    assert pie.is_pie


def test_item6_a_stripped_image_names_its_debug_file(c_bins: dict[str, str]) -> None:
    image = ElfImage.load(c_bins["named-stripped"])
    assert not image.has_symtab
    assert image.dwarf is None
    assert str(debug_file_for(image.build_id)) in image.missing_symtab()
    assert ".debug_info" in image.missing_debug()


@pytest.mark.skipif(not LIBC.exists(), reason="no x86_64 glibc at the Debian path")
def test_item1_libc_thread_locals_and_data() -> None:
    image = ElfImage.load(str(LIBC))
    assert image.is_pie
    assert [s.kind for s in image.lookup("errno")] == ["tls"]
    assert [s.kind for s in image.lookup("environ")] == ["object"]
