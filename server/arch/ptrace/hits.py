"""Building ``HitReport`` objects on the trap path as cheaply as the class allows.

While ``HitReport`` was a frozen, slotted dataclass, its generated ``__init__`` set
each field through ``object.__setattr__``, about 1.7 us a report here, a tenth of
the tracer's whole cost per trap; it is no longer frozen, and then its own
``__init__`` is the fastest (``make_hit`` is that constructor). For a frozen
class, ``make_hit`` sets the same slots through their member descriptors (what
``object.__setattr__`` ends up calling), about 0.9 us. The result is the
object ``__init__`` would build: ``check`` compares both at import, and
``make_hit`` falls back to the constructor if the class ever grows a
``__post_init__`` or fields this module does not expect.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from hwbkptd.core.mechanism import HitReport
from hwbkptd.core.model import Access

__all__ = ["check", "make_hit"]

#: The fields make_hit sets, in order (the others take their defaults).
_FIELDS = (
    "pid",
    "tid",
    "pool",
    "index",
    "generation",
    "ip",
    "address",
    "time_ns",
    "access",
    "values",
    "halted",
)

MakeHit = Callable[
    [int, int, str, int, int, int, int, int, "Access | None", "tuple[bytes, ...]", bool],
    HitReport,
]


def _by_init(
    pid: int,
    tid: int,
    pool: str,
    index: int,
    generation: int,
    ip: int,
    address: int,
    time_ns: int,
    access: Access | None,
    values: tuple[bytes, ...],
    halted: bool,
) -> HitReport:
    return HitReport(
        pid,
        tid,
        pool,
        index,
        generation,
        ip,
        address,
        time_ns,
        access=access,
        values=values,
        halted=halted,
    )


def _by_slots() -> MakeHit | None:
    """The descriptor-based builder, or None when the class is not what it expects."""
    if hasattr(HitReport, "__post_init__") or not hasattr(HitReport, "__slots__"):
        return None
    fields = dataclasses.fields(HitReport)
    names = [f.name for f in fields]
    if any(name not in names for name in _FIELDS):
        return None
    defaults: list[tuple[Any, Any]] = []
    for f in fields:
        if f.name in _FIELDS:
            continue
        if f.default is dataclasses.MISSING:
            return None  # a required field this module does not know
        defaults.append((HitReport.__dict__[f.name].__set__, f.default))
    (pid_, tid_, pool_, index_, gen_, ip_, addr_, time_, access_, values_, halted_) = (
        HitReport.__dict__[name].__set__ for name in _FIELDS
    )
    new = object.__new__
    rest = tuple(defaults)

    def make_hit(
        pid: int,
        tid: int,
        pool: str,
        index: int,
        generation: int,
        ip: int,
        address: int,
        time_ns: int,
        access: Access | None,
        values: tuple[bytes, ...],
        halted: bool,
    ) -> HitReport:
        hit: HitReport = new(HitReport)
        pid_(hit, pid)
        tid_(hit, tid)
        pool_(hit, pool)
        index_(hit, index)
        gen_(hit, generation)
        ip_(hit, ip)
        addr_(hit, address)
        time_(hit, time_ns)
        access_(hit, access)
        values_(hit, values)
        halted_(hit, halted)
        for set_, default in rest:
            set_(hit, default)
        return hit

    return make_hit


def check(make: MakeHit) -> bool:
    """Does ``make`` build what ``HitReport.__init__`` builds?"""
    args = (1, 2, "dr", 3, 4, 5, 6, 7, Access.WRITE, (b"v",), True)
    return make(*args) == _by_init(*args)


# A class that is not frozen has a plain __init__ (about 0.4 us here): faster than
# setting the slots one descriptor call at a time (about 1 us).
_fast = _by_slots() if HitReport.__dataclass_params__.frozen else None  # type: ignore[attr-defined]
#: make_hit(pid, tid, pool, index, generation, ip, address, time_ns, access, values, halted)
make_hit: MakeHit = _fast if _fast is not None and check(_fast) else _by_init
