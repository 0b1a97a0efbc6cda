"""Kernel symbols from /proc/kallsyms: names to addresses and instruction pointers to names.

Lines read ``ADDRESS TYPE NAME [MODULE]``. Without CONFIG_KALLSYMS_ALL (as
here) only text symbols and a few linker markers are listed; data objects such
as ``init_stack`` are found through the marker the linker script puts at the
same address (``__start_init_stack``), see ``Kallsyms.lookup``.
"""

from __future__ import annotations

import bisect
import re
from array import array
from dataclasses import dataclass
from pathlib import Path

from hwbkptd.core.errors import FailedPrecondition, InvalidArgument, NotFound

__all__ = ["KALLSYMS", "KSymbol", "Kallsyms", "parse_location"]

KALLSYMS = Path("/proc/kallsyms")

_TEXT_TYPES = frozenset("tTwW")
_LINE = re.compile(r"^([0-9a-fA-F]+) ([A-Za-z]) (\S+)(?:\t\[([^\]]*)\])?[ \t]*$", re.M)
_LOCATION = re.compile(r"^\s*([A-Za-z_.$][\w.$]*)\s*(?:\+\s*(0[xX][0-9a-fA-F]+|[0-9]+))?\s*$")
_CACHE_LIMIT = 4096
_END_MARKERS = frozenset({"_etext", "_einittext"})


@dataclass(frozen=True, slots=True)
class KSymbol:
    address: int
    kind: str
    name: str
    module: str = ""

    @property
    def is_text(self) -> bool:
        return self.kind in _TEXT_TYPES

    @property
    def is_global(self) -> bool:
        return self.kind.isupper()


def parse_location(location: str, field: str = "spec.symbol") -> tuple[str, int]:
    """``"name"`` or ``"name+0x10"`` (or ``+16``) -> (name, offset)."""
    m = _LOCATION.match(location)
    if m is None:
        raise InvalidArgument(field, f"{location!r} is not SYMBOL or SYMBOL+OFFSET")
    offset = int(m.group(2), 0) if m.group(2) else 0
    return m.group(1), offset


class Kallsyms:
    """An immutable snapshot of the kernel's symbol table.

    Compact on purpose (/proc/kallsyms lists some 120,000 symbols): the raw text is
    kept once, text symbols are indexed by address in flat arrays for
    ``symbolize``, and names are looked up by searching the text, which is only
    done when a request names a symbol.
    """

    def __init__(self, text: str) -> None:
        self._raw = text
        entries: list[tuple[int, bool, bool, int, int]] = []
        count = 0
        visible = False
        for m in _LINE.finditer(text):
            count += 1
            address = int(m.group(1), 16)
            visible = visible or address != 0
            kind = m.group(2)
            if kind in _TEXT_TYPES:
                start, end = m.span(3)
                # Among symbols at one address the last one names it: prefer plain global
                # names over linker markers (_stext, _text) and aliases.
                entries.append((address, text[start] != "_", kind.isupper(), start, end))
        entries.sort(key=lambda e: e[:3])
        self._addrs = array("Q", (e[0] for e in entries))
        self._starts = array("L", (e[3] for e in entries))
        self._ends = array("L", (e[4] for e in entries))
        self._count = count
        #: True when every address reads 0: kptr_restrict hides them from this process.
        self.hidden = count > 0 and not visible
        self._cache: dict[int, str] = {}

    @classmethod
    def from_text(cls, text: str) -> Kallsyms:
        return cls(text)

    @classmethod
    def load(cls, path: Path = KALLSYMS) -> Kallsyms:
        return cls(path.read_text())

    def __len__(self) -> int:
        return self._count

    def candidates(self, name: str) -> tuple[KSymbol, ...]:
        """Every symbol listed under exactly ``name``, in file order."""
        raw = self._raw
        needle = f" {name}"
        found: list[KSymbol] = []
        pos = raw.find(needle)
        while pos >= 0:
            after = pos + len(needle)
            if after == len(raw) or raw[after] in "\t\n ":
                start = raw.rfind("\n", 0, pos) + 1
                end = raw.find("\n", after)
                m = _LINE.fullmatch(raw, start, len(raw) if end < 0 else end)
                if m is not None and m.group(3) == name:
                    found.append(KSymbol(int(m.group(1), 16), m.group(2), name, m.group(4) or ""))
            pos = raw.find(needle, after)
        return tuple(found)

    def lookup(self, name: str) -> KSymbol | None:
        """The symbol called ``name``: global before local, vmlinux before modules.

        A name that is not listed falls back to the linker marker ``__start_NAME``:
        the kernel's linker script defines such markers at the first byte of the
        object they are named after (``__start_init_stack = .; init_stack = .``).
        """
        found = self.candidates(name) or self.candidates(f"__start_{name}")
        if not found:
            return None
        return min(found, key=lambda s: (s.module != "", not s.is_global, s.address))

    def resolve(self, location: str, field: str = "spec.symbol") -> int:
        """The address of ``SYMBOL[+OFFSET]``; NotFound naming the symbol when it is not listed."""
        self._check_visible()
        name, offset = parse_location(location, field)
        sym = self.lookup(name)
        if sym is None:
            raise NotFound(
                field,
                f"kernel symbol {name!r} is not in /proc/kallsyms"
                " (only text symbols are listed without CONFIG_KALLSYMS_ALL)",
            )
        return sym.address + offset

    def symbolize(self, ip: int) -> str:
        """``function+0x1c`` for a kernel text address; "" when no text symbol covers it."""
        cached = self._cache.get(ip)
        if cached is not None:
            return cached
        i = bisect.bisect_right(self._addrs, ip) - 1
        name = ""
        if i >= 0 and not self.hidden:
            sym = self._raw[self._starts[i] : self._ends[i]]
            # Past an end-of-text marker and before the next symbol: not code we can name.
            if sym not in _END_MARKERS:
                name = f"{sym}+{ip - self._addrs[i]:#x}"
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[ip] = name
        return name

    def _check_visible(self) -> None:
        if self.hidden:
            raise FailedPrecondition(
                "kernel symbol addresses are hidden from the broker"
                " (kernel.kptr_restrict); give it CAP_SYSLOG or lower kptr_restrict"
            )
