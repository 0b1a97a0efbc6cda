"""Kernel symbols from /proc/kallsyms: names to addresses and instruction pointers to names.

Lines read ``ADDRESS TYPE NAME [MODULE]``. Without CONFIG_KALLSYMS_ALL (as
here) only text symbols and a few linker markers are listed; data objects such
as ``init_stack`` are found through the marker the linker script puts at the
same address (``__start_init_stack``), see ``Kallsyms.lookup``.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path

from hwbkptd.core.errors import FailedPrecondition, InvalidArgument, NotFound

__all__ = ["KALLSYMS", "KSymbol", "Kallsyms", "parse_location"]

KALLSYMS = Path("/proc/kallsyms")

_TEXT_TYPES = frozenset("tTwW")
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
    """An immutable snapshot of the kernel's symbol table."""

    def __init__(self, symbols: list[KSymbol]) -> None:
        self._by_name: dict[str, list[KSymbol]] = {}
        for sym in symbols:
            self._by_name.setdefault(sym.name, []).append(sym)
        # Among symbols at one address the last one names it: prefer plain global names
        # over linker markers (_stext, _text) and aliases.
        text = sorted(
            (s for s in symbols if s.is_text),
            key=lambda s: (s.address, not s.name.startswith("_"), s.is_global),
        )
        self._text = text
        self._text_addrs = [s.address for s in text]
        #: True when every address reads 0: kptr_restrict hides them from this process.
        self.hidden = bool(symbols) and all(s.address == 0 for s in symbols)
        self._cache: dict[int, str] = {}

    @classmethod
    def from_text(cls, text: str) -> Kallsyms:
        symbols: list[KSymbol] = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 3 or len(parts[1]) != 1:
                continue
            try:
                address = int(parts[0], 16)
            except ValueError:
                continue
            module = parts[3].strip("[]") if len(parts) > 3 else ""
            symbols.append(KSymbol(address, parts[1], parts[2], module))
        return cls(symbols)

    @classmethod
    def load(cls, path: Path = KALLSYMS) -> Kallsyms:
        return cls.from_text(path.read_text())

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_name.values())

    def lookup(self, name: str) -> KSymbol | None:
        """The symbol called ``name``: global before local, vmlinux before modules.

        A name that is not listed falls back to the linker marker ``__start_NAME``:
        the kernel's linker script defines such markers at the first byte of the
        object they are named after (``__start_init_stack = .; init_stack = .``).
        """
        found = self._by_name.get(name)
        if not found:
            found = self._by_name.get(f"__start_{name}")
        if not found:
            return None
        return min(found, key=lambda s: (s.module != "", not s.is_global, s.address))

    def candidates(self, name: str) -> tuple[KSymbol, ...]:
        return tuple(self._by_name.get(name, ()))

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
        i = bisect.bisect_right(self._text_addrs, ip) - 1
        name = ""
        if i >= 0 and not self.hidden:
            sym = self._text[i]
            # Past an end-of-text marker and before the next symbol: not code we can name.
            if sym.name not in _END_MARKERS:
                name = f"{sym.name}+{ip - sym.address:#x}"
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
