"""A SYMBOL or &VARIABLE[.member][[index]] location in one module -> its candidates.

The symbol table says where a name is; DWARF, when present, says what it is: the
size of the variable (``counter`` is 8 bytes, ``&cfg`` 24), where a member or an
element lies (``&cfg.limit``, ``&table[3]``), and the leaves a hit can name. A
member or an element without DWARF is an error that says what is missing.
"""

from __future__ import annotations

import contextlib

from hwbkptd.core.errors import FailedPrecondition, InvalidArgument, NotFound
from hwbkptd.core.model import Access
from hwbkptd.core.names import MissingDebugInfo, Resolved
from hwbkptd.names.dwarf_info import CType, Variable, element_of, leaves, member_of
from hwbkptd.names.elf_image import Report, Symbol
from hwbkptd.names.locations import FIELD, Location
from hwbkptd.names.process_view import Module

__all__ = ["resolve_in_module", "walk_path"]


def walk_path(ctype: CType, name: str, path: tuple[str | int, ...]) -> tuple[int, CType, str]:
    """(offset, type, spelled name) of ``name`` followed by ``path`` (members, indices)."""
    offset, spelled = 0, name
    for step in path:
        if isinstance(step, str):
            found = member_of(ctype, step)
            if found is None:
                raise InvalidArgument(FIELD, f"{spelled} ({ctype.name}) has no member {step!r}")
            off, ctype = found
            offset += off
            spelled = f"{spelled}.{step}"
        else:
            elem = element_of(ctype)
            if elem is None:
                raise InvalidArgument(FIELD, f"{spelled} ({ctype.name}) is not an array")
            count = ctype.size // elem.size if elem.size else 0
            if step >= count:
                raise InvalidArgument(
                    FIELD, f"{spelled}[{step}] is out of bounds: {ctype.name} has {count} elements"
                )
            offset += step * elem.size
            ctype = elem
            spelled = f"{spelled}[{step}]"
    return offset, ctype, spelled


def _candidates(
    mod: Module, name: str, typed: bool, report: Report | None
) -> list[tuple[int, Symbol | None, Variable | None]]:
    syms = mod.image.lookup(name)
    dwarf = mod.image.dwarf
    # DWARF is read in a binary built with -g, or where the symbol table knows the name and
    # the location needs its type (a member, an element): indexing a system library's
    # separate debug file costs seconds, so a plain name there is sized by the symbol.
    wanted = dwarf is not None and (mod.image.own_dwarf or (bool(syms) and typed))
    tell = None
    if report is not None:
        path = mod.path
        tell = lambda done, total: report(path, "debug info", done, total)  # noqa: E731
    variables = dwarf.variables(name, tell) if wanted and dwarf is not None else []
    out: dict[int, tuple[int, Symbol | None, Variable | None]] = {}
    for s in syms:
        out[s.value] = (s.value, s, None)
    for v in variables:
        known = out.get(v.value)
        out[v.value] = (v.value, known[1] if known is not None else None, v)
    return sorted(out.values(), key=lambda c: c[0])


def resolve_in_module(
    mod: Module, loc: Location, access: Access, report: Report | None = None
) -> list[Resolved]:
    """Every place ``loc`` names in ``mod`` (usually zero or one); ``report``: the progress
    of indexing its DWARF, the first time."""
    dwarf = mod.image.dwarf
    # Types are walked lazily, reading the file: one reader at a time (DwarfInfo.lock).
    with dwarf.lock if dwarf is not None else contextlib.nullcontext():
        return _resolve_in_module(mod, loc, access, report)


def _resolve_in_module(
    mod: Module, loc: Location, access: Access, report: Report | None
) -> list[Resolved]:
    found: list[Resolved] = []
    for value, sym, var in _candidates(mod, loc.name, loc.needs_type, report):
        if sym is not None and sym.kind == "tls":
            raise FailedPrecondition(
                f"{FIELD}: {loc.name!r} in {mod.basename} is thread-local (STT_TLS): each thread"
                " has its own copy at its own address; watch that address in one thread"
            )
        ctype = var.ctype if var is not None else None
        if loc.path and ctype is None:
            if mod.image.dwarf is None:
                raise MissingDebugInfo(
                    FIELD,
                    f"{loc.text!r} needs the type of {loc.name!r}: {mod.image.missing_debug()}",
                )
            raise NotFound(FIELD, f"{loc.name!r} in {mod.basename} has no DWARF type")
        offset, spelled = 0, loc.name
        if ctype is not None and loc.path:
            offset, ctype, spelled = walk_path(ctype, loc.name, loc.path)
        length = 0
        if access is not Access.EXEC:
            if ctype is not None:
                length = ctype.size
            elif sym is not None and sym.kind == "object":
                length = sym.size
        members = leaves(ctype, spelled) if ctype is not None else ()
        if loc.offset:
            offset += loc.offset
            spelled = f"{spelled}+{loc.offset:#x}"
            length, members = 0, ()
        if len(members) <= 1:
            members = ()
        link = value + offset
        dwarf = mod.image.dwarf
        source = var.source if var is not None else ""
        if not source and dwarf is not None and (sym is None or sym.kind == "func"):
            source = dwarf.line_of(link)
        found.append(
            Resolved(
                location=loc.text,
                address=link + mod.bias,
                length=length,
                symbol=spelled,
                module=mod.path,
                build_id=mod.image.build_id,
                load_bias=mod.bias,
                type_name=ctype.name if ctype is not None else "",
                source=source,
                members=tuple(members),
            )
        )
    return found
