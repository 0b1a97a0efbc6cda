"""Names the user wrote, as the core sees them: a resolution, and hits put in words (issue 13).

The core reads no files: ``hwbkptd.names`` (ELF/DWARF over a process's mappings)
implements ``Names`` and the daemon injects it through ``MachineHooks``. Here are
the values it hands over and the pure judgement the hit path makes with them:
which member of a struct a hit wrote (``member_written``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hwbkptd.core.errors import FailedPrecondition, NotFound
from hwbkptd.core.model import Access, Scope

__all__ = [
    "HitWords",
    "Member",
    "MissingDebugInfo",
    "NameProgress",
    "Names",
    "NotMappedYet",
    "Resolved",
    "member_written",
]


class MissingDebugInfo(FailedPrecondition):
    """The name needs debug information its binary lacks; ``field`` names the request's field
    and the message says which binary and which section or file is missing."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotMappedYet(NotFound):
    """``MODULE!SYMBOL`` names a module the process has not mapped (yet): a process-scope
    request waits for it (PENDING, reason UNRESOLVED) instead of failing."""


@dataclass(frozen=True, slots=True)
class Member:
    """One leaf of a resolved region: ``name`` (``cfg.limit``, ``table[3]``) at ``offset``
    bytes from the region's start, ``size`` bytes long."""

    offset: int
    size: int
    name: str


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a location string named, in the target as it is mapped now."""

    #: What the user wrote (``&cfg``, ``libc.so.6!environ``, ``named.c:42``).
    location: str
    address: int
    #: Bytes the name covers by its type (0: the name has no size; the request's applies).
    length: int
    #: The name in canonical words: ``cfg``, ``cfg.limit``, ``main+0x10``, ``named.c:42``.
    symbol: str = ""
    #: The binary it was found in (a path as mapped; "" for an address or the kernel).
    module: str = ""
    build_id: str = ""
    load_bias: int = 0
    #: The C type of a variable (``struct config``), or "" when unknown.
    type_name: str = ""
    #: ``file:line`` of the instruction (exec) or of the variable's declaration.
    source: str = ""
    #: The leaves of a struct or array, for ``member_written``; () for a scalar.
    members: tuple[Member, ...] = ()
    #: True when a later exec or mapping should resolve it again (a name, not an address).
    by_name: bool = True


@dataclass(frozen=True, slots=True)
class HitWords:
    """A hit's addresses in the user's words; "" where nothing is known."""

    #: ``function+0x1c``
    ip_symbol: str = ""
    #: ``file.c:42``
    ip_line: str = ""
    #: ``counter`` or ``cfg+0x8``
    address_symbol: str = ""


#: ``report(module, detail, done, total)``: how far reading a binary's part came (bytes).
NameProgress = Callable[[str, str, int, int], None]


class Names(Protocol):
    def resolve(self, scope: Scope, pid: int, location: str, access: Access) -> Resolved:
        """Resolve ``location`` in ``pid``'s mapped binaries (kernel: /proc/kallsyms).

        InvalidArgument ``spec.symbol`` for bad syntax or an ambiguous name (listing the
        candidates), NotFound ``spec.symbol`` for an unknown one, MissingDebugInfo when the
        name needs DWARF its binary lacks."""
        ...

    def prepare(self, pid: int, location: str, access: Access, report: NameProgress) -> None:
        """Read and index what resolving ``location`` in ``pid`` will read, telling
        ``report`` as it goes. Called on a worker thread (the core's ``resolve`` then finds
        it read); thread-safe against the other methods; never raises."""
        ...

    def prepare_hits(self, pid: int, address: int, report: NameProgress) -> None:
        """Read and index what describing hits on ``address`` in ``pid`` will read (the
        mappings, the binaries mapped, the line table of the module at ``address`` and of
        the executable), telling ``report``. Called on a worker thread, so that the hit
        path (``describe_hit``, on the event loop) finds it read; never raises."""
        ...

    def describe_hit(self, pid: int, ip: int, address: int, access: Access | None) -> HitWords:
        """The hit's instruction and data address in words. Never raises; cached."""
        ...

    def forget(self, pid: int) -> None:
        """``pid`` exec'd or ended: its mappings are stale."""
        ...


def member_written(resolved: Resolved, chunk: tuple[int, int], value: bytes, old: bytes) -> str:
    """The members of ``resolved`` whose bytes changed (``value`` after, ``old`` before: the
    whole region's bytes); without a change, every member the trapping ``chunk`` (address,
    length) covers. Joined by ``,``; "" for a scalar."""
    members = resolved.members
    if not members:
        return ""
    changed = [i for i in range(min(len(value), len(old))) if value[i] != old[i]]
    if changed:
        hit = [m.name for m in members if any(m.offset <= b < m.offset + m.size for b in changed)]
    else:
        lo = chunk[0] - resolved.address
        hi = lo + max(chunk[1], 1)
        hit = [m.name for m in members if m.offset < hi and lo < m.offset + m.size]
    return ",".join(hit)
