"""One binary's DWARF, read lazily: global variables with their types, and line tables.

Only what names and hits need: the top-level variables of each compile unit
(with a static address, ``DW_OP_addr``), their types reduced to a size and the
leaves a hit can name (``cfg.limit``, ``table[3]``), and the line table as two
sorted arrays (address -> file:line, and file:line -> first address). The file
is opened on first use and kept open while the image lives (types are read on
demand).
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from elftools.dwarf.die import DIE
from elftools.elf.elffile import ELFFile

from hwbkptd.core.names import Member

#: DIEs between two progress reports while indexing variables.
REPORT_EVERY = 4096

__all__ = ["CType", "DwarfInfo", "Variable"]

_DW_OP_ADDR = 0x03
_QUALIFIERS = frozenset(
    {"DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_atomic_type"}
)
#: A struct or array with more leaves than this names its hits by offset only.
MAX_LEAVES = 256


@dataclass(frozen=True, slots=True)
class CType:
    """A type as names need it: its C spelling, size, and the DIE to walk into."""

    name: str
    size: int
    die: DIE | None


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    #: Link-time address.
    value: int
    ctype: CType
    source: str


def _name(die: DIE) -> str:
    attr = die.attributes.get("DW_AT_name")
    return attr.value.decode(errors="replace") if attr is not None else ""


def _strip(die: DIE | None) -> DIE | None:
    while die is not None and die.tag in _QUALIFIERS:
        die = die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes else None
    return die


def _array_counts(die: DIE) -> list[int]:
    counts = []
    for sub in die.iter_children():
        if sub.tag != "DW_TAG_subrange_type":
            continue
        if "DW_AT_count" in sub.attributes:
            counts.append(int(sub.attributes["DW_AT_count"].value))
        elif "DW_AT_upper_bound" in sub.attributes:
            counts.append(int(sub.attributes["DW_AT_upper_bound"].value) + 1)
        else:
            counts.append(0)
    return counts


def describe_type(die: DIE | None) -> CType:
    """The C spelling and size of a type DIE (qualifiers and typedefs see through)."""
    spelled = _name(die) if die is not None else ""
    base = _strip(die)
    if base is None:
        return CType(spelled or "void", 0, None)
    tag = str(base.tag)
    if tag == "DW_TAG_array_type":
        elem = describe_type(base.get_DIE_from_attribute("DW_AT_type"))
        counts = _array_counts(base)
        size = elem.size
        for n in counts:
            size *= n
        dims = "".join(f"[{n}]" for n in counts)
        return CType(spelled or f"{elem.name}{dims}", size, base)
    size_attr = base.attributes.get("DW_AT_byte_size")
    size = int(size_attr.value) if size_attr is not None else (8 if "pointer" in tag else 0)
    kind = {
        "DW_TAG_structure_type": "struct ",
        "DW_TAG_union_type": "union ",
        "DW_TAG_enumeration_type": "enum ",
    }.get(tag, "")
    if not spelled:
        spelled = (
            f"{kind}{_name(base)}" if _name(base) else ("pointer" if "pointer" in tag else "?")
        )
    return CType(spelled, size, base)


def member_of(ctype: CType, member: str) -> tuple[int, CType] | None:
    """(offset, type) of ``member`` in a struct or union; None when it has none."""
    die = ctype.die
    if die is None or die.tag not in ("DW_TAG_structure_type", "DW_TAG_union_type"):
        return None
    for child in die.iter_children():
        if child.tag == "DW_TAG_member" and _name(child) == member:
            loc = child.attributes.get("DW_AT_data_member_location")
            offset = int(loc.value) if loc is not None and isinstance(loc.value, int) else 0
            return offset, describe_type(child.get_DIE_from_attribute("DW_AT_type"))
    return None


def element_of(ctype: CType) -> CType | None:
    """The element type of an array type (one dimension peeled); None otherwise."""
    die = ctype.die
    if die is None or die.tag != "DW_TAG_array_type":
        return None
    elem = describe_type(die.get_DIE_from_attribute("DW_AT_type"))
    counts = _array_counts(die)
    if len(counts) > 1:
        inner = elem.size
        for n in counts[1:]:
            inner *= n
        return CType(f"{elem.name}[{']['.join(map(str, counts[1:]))}]", inner, None)
    return elem


def leaves(ctype: CType, prefix: str, offset: int = 0) -> list[Member]:
    """The scalar leaves of a type, as a hit names them (char arrays are one leaf)."""
    out: list[Member] = []
    die = ctype.die
    if die is not None and die.tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
        for child in die.iter_children():
            if child.tag != "DW_TAG_member" or len(out) > MAX_LEAVES:
                continue
            loc = child.attributes.get("DW_AT_data_member_location")
            off = int(loc.value) if loc is not None and isinstance(loc.value, int) else 0
            sub = describe_type(child.get_DIE_from_attribute("DW_AT_type"))
            out += leaves(sub, f"{prefix}.{_name(child)}", offset + off)
        return out
    elem = element_of(ctype)
    if elem is not None and elem.size > 1 and ctype.size // elem.size <= MAX_LEAVES:
        for i in range(ctype.size // elem.size):
            out += leaves(elem, f"{prefix}[{i}]", offset + i * elem.size)
        return out
    return [Member(offset, ctype.size, prefix)]


class DwarfInfo:
    """Variables and lines of one file with .debug_info; parsed on first use."""

    def __init__(self, path: str) -> None:
        self.path = path
        #: Held by whoever reads the file: a names worker thread indexing (issue 14) and the
        #: event loop walking types or lines share one stream, which is not thread-safe.
        self.lock = threading.RLock()
        self._elf: ELFFile | None = None
        self._vars: dict[str, list[Variable]] | None = None
        self._line_addrs: list[int] = []
        self._line_rows: list[tuple[str, int]] = []
        self._lines_by_file: dict[tuple[str, int], int] | None = None

    def _dwarf(self) -> Any:
        if self._elf is None:
            self._elf = ELFFile(open(self.path, "rb"))  # noqa: SIM115 - kept open for lazy DIEs
        return self._elf.get_dwarf_info()

    def variables(
        self, name: str, report: Callable[[int, int], None] | None = None
    ) -> list[Variable]:
        """The global and file-static variables called ``name`` that have an address.
        ``report(done, total)``: bytes of .debug_info indexed, the first time only."""
        with self.lock:
            if self._vars is None:
                self._vars = self._index_variables(report)
            return list(self._vars.get(name, ()))

    def _index_variables(
        self, report: Callable[[int, int], None] | None
    ) -> dict[str, list[Variable]]:
        found: dict[str, list[Variable]] = {}
        dwarf = self._dwarf()
        total = int(dwarf.debug_info_sec.size) if report is not None else 0
        for cu in dwarf.iter_CUs():
            top = cu.get_top_DIE()
            cu_file = os.path.basename(_name(top))
            for i, die in enumerate(top.iter_children()):
                if report is not None and i % REPORT_EVERY == 0:
                    report(min(int(die.offset), total - 1), total)
                if die.tag != "DW_TAG_variable":
                    continue
                loc = die.attributes.get("DW_AT_location")
                if loc is None or not isinstance(loc.value, list) or len(loc.value) != 9:
                    continue
                if loc.value[0] != _DW_OP_ADDR:
                    continue
                value = int.from_bytes(bytes(loc.value[1:9]), "little")
                decl = die
                if "DW_AT_specification" in die.attributes:
                    decl = die.get_DIE_from_attribute("DW_AT_specification")
                name = _name(decl)
                if not name or "DW_AT_type" not in decl.attributes:
                    continue
                line = decl.attributes.get("DW_AT_decl_line")
                source = f"{cu_file}:{line.value}" if line is not None else cu_file
                ctype = describe_type(decl.get_DIE_from_attribute("DW_AT_type"))
                found.setdefault(name, []).append(Variable(name, value, ctype, source))
        if report is not None:
            report(total, total)
        return found

    def _index_lines(self) -> None:
        rows: list[tuple[int, str, int]] = []
        by_file: dict[tuple[str, int], int] = {}
        dwarf = self._dwarf()
        for cu in dwarf.iter_CUs():
            lp = dwarf.line_program_for_CU(cu)
            if lp is None:
                continue
            files = lp["file_entry"]
            base = 0 if lp["version"] >= 5 else 1
            for entry in lp.get_entries():
                state = entry.state
                if state is None:
                    continue
                if state.end_sequence:
                    rows.append((state.address, "", 0))
                    continue
                index = state.file - base
                fname = files[index].name.decode() if 0 <= index < len(files) else "?"
                fname = os.path.basename(fname)
                rows.append((state.address, fname, state.line))
                if state.is_stmt:
                    key = (fname, state.line)
                    if key not in by_file or state.address < by_file[key]:
                        by_file[key] = state.address
        rows.sort(key=lambda r: (r[0], r[2] == 0))
        self._line_addrs = [r[0] for r in rows]
        self._line_rows = [(r[1], r[2]) for r in rows]
        self._lines_by_file = by_file

    def line_of(self, value: int) -> str:
        """``file:line`` of link-time ``value``; "" outside every sequence."""
        if self._lines_by_file is None:
            with self.lock:
                if self._lines_by_file is None:
                    self._index_lines()
        i = bisect.bisect_right(self._line_addrs, value) - 1
        if i < 0:
            return ""
        fname, line = self._line_rows[i]
        return f"{fname}:{line}" if line else ""

    def address_of_line(self, file: str, line: int) -> tuple[int, int] | None:
        """(link-time address, line) of the first statement at ``file:line`` or, as gdb
        does, of the next line that has code (within 50 lines); None otherwise."""
        if self._lines_by_file is None:
            with self.lock:
                if self._lines_by_file is None:
                    self._index_lines()
        assert self._lines_by_file is not None
        base = os.path.basename(file)
        for candidate in range(line, line + 50):
            value = self._lines_by_file.get((base, candidate))
            if value is not None:
                return value, candidate
        return None

    def has_file(self, file: str) -> bool:
        if self._lines_by_file is None:
            with self.lock:
                if self._lines_by_file is None:
                    self._index_lines()
        assert self._lines_by_file is not None
        base = os.path.basename(file)
        return any(f == base for f, _ in self._lines_by_file)
