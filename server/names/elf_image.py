"""One ELF binary's symbols, read once with pyelftools and kept by build-id (issue 13).

An ``ElfImage`` holds what name resolution and hit symbolization need from a
file: its type (ET_EXEC or ET_DYN), its loadable segments (for the load bias),
its build-id, its defined symbols by name and by address, and, lazily, its
DWARF (``dwarf_info.DwarfInfo``). When the file itself is stripped, the
separate debug file ``/usr/lib/debug/.build-id/xx/rest.debug`` supplies the
symbols and the DWARF, as gdb reads it.
"""

from __future__ import annotations

import bisect
import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from hwbkptd.names.dwarf_info import DwarfInfo

__all__ = [
    "DEBUG_ROOT",
    "REPORT_EVERY",
    "ElfImage",
    "Report",
    "Symbol",
    "debug_file_for",
    "read_symbols",
]

#: ``report(module, detail, done, total)``: how far reading a binary's ``detail`` part
#: ("symbols", "debug info") came, in bytes (issue 14). A last call has done == total.
Report = Callable[[str, str, int, int], None]
#: Symbols (or DIEs) between two reports.
REPORT_EVERY = 4096

DEBUG_ROOT = Path("/usr/lib/debug/.build-id")
_KINDS = {"STT_FUNC": "func", "STT_GNU_IFUNC": "func", "STT_OBJECT": "object", "STT_TLS": "tls"}


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    #: The link-time value (add the load bias for the run-time address).
    value: int
    size: int
    #: ``func``, ``object`` or ``tls``.
    kind: str
    local: bool


def debug_file_for(build_id: str, root: Path = DEBUG_ROOT) -> Path:
    """Where a separate debug file for ``build_id`` lives (it may not exist)."""
    return root / build_id[:2] / f"{build_id[2:]}.debug"


def _build_id(elf: ELFFile) -> str:
    for seg in elf.iter_segments():
        if seg["p_type"] != "PT_NOTE":
            continue
        notes: Any = seg
        for note in notes.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":
                return str(note["n_desc"])
    return ""


#: Elf64_Sym, little-endian: st_name, st_info, st_other, st_shndx, st_value, st_size.
_SYM64 = struct.Struct("<IBBHQQ")
_STT = {2: "func", 10: "func", 1: "object", 6: "tls"}


def _raw_symbols(
    elf: ELFFile, section: SymbolTableSection, tick: Callable[[int], None] | None = None
) -> list[tuple[str, int, int, str, bool]]:
    """(name, value, size, kind, local) of the defined, named symbols, read straight from
    the section: pyelftools' per-symbol objects cost about 25 µs each, which is 1.3 s for
    a program with 50,000 symbols; this is some 30 times faster. ``tick(bytes)`` is told
    the bytes of the table read so far, every REPORT_EVERY symbols."""
    strtab: Any = elf.get_section(section["sh_link"])
    names = strtab.data()
    out = []
    for i, (st_name, info, _, shndx, value, size) in enumerate(_SYM64.iter_unpack(section.data())):
        if tick is not None and i and i % REPORT_EVERY == 0:
            tick(i * _SYM64.size)
        kind = _STT.get(info & 0xF)
        if kind is None or shndx == 0 or st_name == 0:
            continue
        end = names.index(b"\0", st_name)
        out.append((names[st_name:end].decode(errors="replace"), value, size, kind, info >> 4 == 0))
    return out


def _tick(report: Callable[[int, int], None], base: int, total: int, done: int) -> None:
    report(base + done, total)


def read_symbols(
    elf: ELFFile, *, fast: bool = True, report: Callable[[int, int], None] | None = None
) -> tuple[list[Symbol], bool]:
    """Defined, named symbols of .symtab and .dynsym; True when .symtab was there. ``fast``
    reads 64-bit little-endian tables straight from the section (else through pyelftools).
    ``report(done, total)``: bytes of the two tables read (fast reading only)."""
    found: dict[tuple[str, int], Symbol] = {}
    has_symtab = False
    fast = fast and elf.elfclass == 64 and elf.little_endian
    tables = [
        (name, section)
        for name in (".symtab", ".dynsym")
        if isinstance(section := elf.get_section_by_name(name), SymbolTableSection)
    ]
    total = sum(int(section["sh_size"]) for _, section in tables)
    base = 0
    for section_name, section in tables:
        has_symtab = has_symtab or section_name == ".symtab"
        if fast:
            tick = functools.partial(_tick, report, base, total) if report is not None else None
            raw_symbols = _raw_symbols(elf, section, tick)
            base += int(section["sh_size"])
            if report is not None:
                report(base, total)
            for raw, value, size, kind, local in raw_symbols:
                # Versioned dynamic names (errno@@GLIBC_PRIVATE) are found by their plain name.
                name = raw.split("@", 1)[0]
                if (name, value) not in found:
                    found[(name, value)] = Symbol(name, value, size, kind, local)
            continue
        for sym in section.iter_symbols():
            entry: Any = sym.entry
            slow_kind = _KINDS.get(entry["st_info"]["type"])
            if slow_kind is None or entry["st_shndx"] == "SHN_UNDEF" or not sym.name:
                continue
            # Versioned dynamic names (errno@@GLIBC_PRIVATE) are found by their plain name.
            name = sym.name.split("@", 1)[0]
            key = (name, int(entry["st_value"]))
            if key not in found:
                found[key] = Symbol(
                    name=name,
                    value=key[1],
                    size=int(entry["st_size"]),
                    kind=slow_kind,
                    local=entry["st_info"]["bind"] == "STB_LOCAL",
                )
    return list(found.values()), has_symtab


class ElfImage:
    """What one binary says about names. Build with ``ElfImage.load``; immutable after."""

    def __init__(
        self,
        path: str,
        *,
        build_id: str,
        is_pie: bool,
        segments: tuple[tuple[int, int], ...],
        link_end: int,
        symbols: list[Symbol],
        has_symtab: bool,
        debug_path: str,
        dwarf: DwarfInfo | None,
    ) -> None:
        self.path = path
        self.build_id = build_id
        #: ET_DYN: loaded at a bias chosen at run time (PIE executables, shared objects).
        self.is_pie = is_pie
        #: (page-aligned file offset, page-aligned vaddr) of each PT_LOAD segment.
        self.segments = segments
        #: The end of the highest segment in memory (.bss included), link-time.
        self.link_end = link_end
        self.has_symtab = has_symtab
        #: The separate debug file used, or "" when the binary carries its own.
        self.debug_path = debug_path
        self.dwarf = dwarf
        #: DWARF in the binary itself (built with -g), not from /usr/lib/debug: only then are
        #: its line tables read (a system library's are large: seconds to index).
        self.own_dwarf = dwarf is not None and not debug_path
        self._by_name: dict[str, list[Symbol]] = {}
        for sym in symbols:
            self._by_name.setdefault(sym.name, []).append(sym)
        sized = sorted(
            (s for s in symbols if s.kind in ("func", "object")), key=lambda s: (s.value, -s.size)
        )
        self._starts = [s.value for s in sized]
        self._sorted = sized

    @classmethod
    def load(
        cls, path: str, debug_root: Path = DEBUG_ROOT, report: Report | None = None
    ) -> ElfImage:
        """Read ``path`` (and its separate debug file when present). OSError or
        ELFError when it cannot be read as ELF. ``report``: progress, as "symbols"."""
        with open(path, "rb") as f:
            elf = ELFFile(f)
            build_id = _build_id(elf)
            segments = tuple(
                (int(s["p_offset"]) & ~0xFFF, int(s["p_vaddr"]) & ~0xFFF)
                for s in elf.iter_segments()
                if s["p_type"] == "PT_LOAD"
            )
            link_end = max(
                (
                    int(s["p_vaddr"]) + int(s["p_memsz"])
                    for s in elf.iter_segments()
                    if s["p_type"] == "PT_LOAD"
                ),
                default=0,
            )
            is_pie = elf["e_type"] == "ET_DYN"
            tell = (lambda d, t: report(path, "symbols", d, t)) if report is not None else None
            symbols, has_symtab = read_symbols(elf, report=tell)
            own_dwarf = elf.get_section_by_name(".debug_info") is not None
            dwarf = DwarfInfo(path) if own_dwarf else None
        debug_path = ""
        debug = debug_file_for(build_id, debug_root) if build_id else None
        if debug is not None and debug.is_file() and (not has_symtab or dwarf is None):
            with debug.open("rb") as g:
                delf = ELFFile(g)
                dsyms, dsymtab = read_symbols(delf)
                if dsymtab:
                    symbols, has_symtab = _merge(symbols, dsyms), True
                if dwarf is None and delf.get_section_by_name(".debug_info") is not None:
                    debug_path = str(debug)
                    dwarf = DwarfInfo(debug_path)
        return cls(
            path,
            build_id=build_id,
            is_pie=is_pie,
            segments=segments,
            link_end=link_end,
            symbols=symbols,
            has_symtab=has_symtab,
            debug_path=debug_path,
            dwarf=dwarf,
        )

    def bias_for(self, map_start: int, map_offset: int) -> int:
        """The load bias, from one mapping of the file (start address, file offset)."""
        if not self.is_pie:
            return 0
        for offset, vaddr in self.segments:
            if offset == map_offset:
                return map_start - vaddr
        return map_start - map_offset

    def lookup(self, name: str) -> list[Symbol]:
        """Every defined symbol called ``name`` (distinct values)."""
        return list(self._by_name.get(name, ()))

    def symbol_count(self) -> int:
        return len(self._sorted)

    def containing(self, value: int) -> tuple[Symbol, int] | None:
        """The function or object covering link-time ``value`` and the offset into it."""
        i = bisect.bisect_right(self._starts, value) - 1
        # Walk back over zero-sized markers and nested symbols sharing a start.
        for j in range(i, max(i - 8, -1), -1):
            sym = self._sorted[j]
            if sym.value <= value < sym.value + max(sym.size, 1):
                return sym, value - sym.value
        return None

    def missing_debug(self) -> str:
        """Says what is missing for DWARF-based names, for the error message."""
        where = f"/usr/lib/debug/.build-id/{self.build_id[:2]}/{self.build_id[2:]}.debug"
        extra = f" and no separate debug file {where}" if self.build_id else " (no build-id)"
        return f"{self.path} has no DWARF (.debug_info){extra}"

    def missing_symtab(self) -> str:
        where = f"/usr/lib/debug/.build-id/{self.build_id[:2]}/{self.build_id[2:]}.debug"
        extra = f" and no separate debug file {where}" if self.build_id else ""
        return f"{self.path} is stripped: no symbol table (.symtab){extra}"


def _merge(own: list[Symbol], debug: list[Symbol]) -> list[Symbol]:
    seen = {(s.name, s.value) for s in own}
    return own + [s for s in debug if (s.name, s.value) not in seen]
