"""Location strings, parsed (issue 13): what a user may write where an address goes.

    ADDRESS             0x401136, 4198710
    SYMBOL[+OFFSET]     counter, main+0x10
    MODULE!SYMBOL       libc.so.6!environ, libnamed_lib.so!lib_counter
    FILE:LINE           named.c:42 (an instruction: exec)
    &VARIABLE[PATH]     &cfg, &cfg.limit, &table[3], cfg.tag[2] (the & is optional)

Pure: no file is read here. Errors name ``spec.symbol``, the field the string came in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hwbkptd.core.errors import InvalidArgument

__all__ = ["FIELD", "Location", "parse"]

FIELD = "spec.symbol"

_NUMBER = r"(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_FILE_LINE = re.compile(r"^(?P<file>[^:!\s&]+\.[A-Za-z0-9+]+):(?P<line>[0-9]+)$")
_SYMBOL = re.compile(
    r"^(?:(?P<module>[^!\s]+)!)?(?P<amp>&)?\s*(?P<name>[A-Za-z_$][\w$@]*(?:\.[0-9]+)?)"
    r"(?P<path>(?:\s*(?:\.\s*[A-Za-z_]\w*|\[\s*" + _NUMBER + r"\s*\]))*)"
    r"\s*(?:\+\s*(?P<offset>" + _NUMBER + r"))?$"
)
_STEP = re.compile(r"\.\s*([A-Za-z_]\w*)|\[\s*(" + _NUMBER + r")\s*\]")
_ADDRESS = re.compile(r"^" + _NUMBER + r"$")


@dataclass(frozen=True, slots=True)
class Location:
    """One parsed location. ``kind`` is ``address``, ``symbol`` or ``line``."""

    text: str
    kind: str
    address: int = 0
    module: str = ""
    name: str = ""
    #: Member names and array indices after the name, in order (``cfg.tag[2]``).
    path: tuple[str | int, ...] = ()
    offset: int = 0
    address_of: bool = False
    file: str = ""
    line: int = 0

    @property
    def needs_type(self) -> bool:
        """True when the name's DWARF type must be read (a member or an element)."""
        return bool(self.path)


def parse(text: str) -> Location:
    """Parse ``text``; InvalidArgument ``spec.symbol`` naming the accepted forms."""
    if not isinstance(text, str):
        raise InvalidArgument(FIELD, "must be a string")
    t = text.strip()
    if not t:
        raise InvalidArgument(FIELD, "empty location")
    if _ADDRESS.match(t):
        return Location(text=text, kind="address", address=int(t, 0))
    m = _FILE_LINE.match(t)
    if m is not None:
        line = int(m.group("line"))
        if line <= 0:
            raise InvalidArgument(FIELD, f"{text!r}: line numbers start at 1")
        return Location(text=text, kind="line", file=m.group("file"), line=line)
    m = _SYMBOL.match(t)
    if m is None:
        raise InvalidArgument(
            FIELD,
            f"{text!r} is not ADDRESS, SYMBOL[+OFFSET], MODULE!SYMBOL, FILE:LINE or"
            " &VARIABLE[.member][[index]]",
        )
    path: list[str | int] = []
    for step in _STEP.finditer(m.group("path") or ""):
        path.append(step.group(1) if step.group(1) is not None else int(step.group(2), 0))
    offset = int(m.group("offset"), 0) if m.group("offset") else 0
    return Location(
        text=text,
        kind="symbol",
        module=m.group("module") or "",
        name=m.group("name"),
        path=tuple(path),
        offset=offset,
        address_of=bool(m.group("amp")),
    )
