"""What a user writes, turned into models before anything is sent.

A request's keywords are listed once, in ``SpecArgs`` (``set_breakpoint``) and ``WatchArgs``
(``watch``, the shortcut); each one's default is written once, in ``_spec``. The command
line, both sessions and the conversion to protocol buffers pass these along as one value.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TypedDict, Unpack

from hwbkpt import models as m

__all__ = [
    "SpecArgs",
    "WatchArgs",
    "make_filter",
    "make_spec",
    "parse_access",
    "parse_action",
    "parse_priority",
    "parse_scope",
    "seconds_of",
    "value_bytes",
    "watch_spec",
]

_ACCESS_ALIASES = {"read_write": m.Access.READ_WRITE, "readwrite": m.Access.READ_WRITE}


class _RequestArgs(TypedDict, total=False):
    """The keywords ``set_breakpoint`` and ``watch`` share."""

    #: The process (every thread of it) or, with ``tid``, one thread.
    pid: int
    tid: int
    #: Bytes; default 8, and 0 (the arch's instruction length) for exec.
    length: int | None
    #: Default write.
    access: m.Access | str
    #: 0..100 or a preset name; default the broker's normal (25).
    priority: int | str | None
    changed_only: bool
    #: Report N hits, then the broker removes the request itself (0: never).
    stop_after: int
    nonstop: bool
    #: Kernel scope: the kernel call chain with each hit.
    call_chain: bool


class SpecArgs(_RequestArgs, total=False):
    """The keywords of ``Session.set_breakpoint``; what is left out takes its default."""

    #: Default thread when ``tid`` is given, else process when ``pid`` is.
    scope: m.Scope | str | None
    address: int
    #: Default notify.
    action: m.Action | str
    #: Report only hits after which the value equals this (an int takes ``length`` bytes).
    equals: int | bytes | None
    ignore_first: int
    #: A name for the broker to resolve instead of ``address``.
    symbol: str


class WatchArgs(_RequestArgs, total=False):
    """The keywords of ``Session.watch`` besides the location."""

    #: A kernel address, on every CPU.
    kernel: bool
    #: Stop the thread on each hit.
    halt: bool


# --- single arguments ------------------------------------------------------------------
def parse_access(value: m.Access | str) -> m.Access:
    if isinstance(value, m.Access):
        return value
    text = value.strip().lower()
    if text in _ACCESS_ALIASES:
        return _ACCESS_ALIASES[text]
    try:
        return m.Access(text)
    except ValueError:
        names = ", ".join(a.value for a in m.Access)
        raise ValueError(f"access {value!r}: expected one of {names}") from None


def parse_scope(value: m.Scope | str) -> m.Scope:
    if isinstance(value, m.Scope):
        return value
    try:
        return m.Scope(value.strip().lower())
    except ValueError:
        names = ", ".join(s.value for s in m.Scope)
        raise ValueError(f"scope {value!r}: expected one of {names}") from None


def parse_action(value: m.Action | str) -> m.Action:
    if isinstance(value, m.Action):
        return value
    try:
        return m.Action(value.strip().lower())
    except ValueError:
        raise ValueError(f"action {value!r}: expected notify or halt") from None


def parse_priority(value: int | str | None) -> int | None:
    """An integer, a decimal string or a preset name. The range is the broker's to check."""
    if value is None or isinstance(value, int):
        return value
    text = value.strip().lower()
    if text in m.PRIORITY_PRESETS:
        return m.PRIORITY_PRESETS[text]
    try:
        return int(text, 0)
    except ValueError:
        names = ", ".join(m.PRIORITY_PRESETS)
        raise ValueError(f"priority {value!r}: expected an integer or one of {names}") from None


def seconds_of(value: float | timedelta, name: str) -> float:
    """Seconds from a number of seconds or a ``timedelta`` (the wire carries a Duration)."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"{name} {value} must not be negative")
    return seconds


def value_bytes(value: int | bytes, size: int) -> bytes:
    """Little-endian bytes of ``value``; an int takes ``size`` bytes (8 when size is 0)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    width = size or 8
    try:
        return value.to_bytes(width, "little", signed=value < 0)
    except OverflowError:
        raise ValueError(f"value {value} does not fit in {width} bytes") from None


def make_filter(
    *,
    changed_only: bool = False,
    equals: int | bytes | None = None,
    ignore_first: int = 0,
    stop_after: int = 0,
    length: int = 8,
) -> m.Filter:
    return m.Filter(
        changed_only=changed_only,
        equals=None if equals is None else value_bytes(equals, length),
        ignore_first=ignore_first,
        stop_after=stop_after,
    )


# --- whole requests --------------------------------------------------------------------
def make_spec(**args: Unpack[SpecArgs]) -> m.BreakpointSpec:
    """``set_breakpoint``'s keywords as a spec. Ranges are left to the broker, which names
    the faulty field."""
    _refuse_unknown("set_breakpoint", args, SpecArgs.__optional_keys__)
    return _spec(
        args,
        scope=args.get("scope"),
        address=args.get("address", 0),
        symbol=args.get("symbol", ""),
        action=args.get("action", m.Action.NOTIFY),
        equals=args.get("equals"),
        ignore_first=args.get("ignore_first", 0),
    )


def watch_spec(location: int | str, **args: Unpack[WatchArgs]) -> m.BreakpointSpec:
    """``watch``'s location (an address, or a symbol name) and keywords as a spec."""
    _refuse_unknown("watch", args, WatchArgs.__optional_keys__)
    return _spec(
        args,
        scope=m.Scope.KERNEL if args.get("kernel", False) else None,
        address=location if isinstance(location, int) else 0,
        symbol=location if isinstance(location, str) else "",
        action=m.Action.HALT if args.get("halt", False) else m.Action.NOTIFY,
        equals=None,
        ignore_first=0,
    )


def _spec(
    args: _RequestArgs,
    *,
    scope: m.Scope | str | None,
    address: int,
    symbol: str,
    action: m.Action | str,
    equals: int | bytes | None,
    ignore_first: int,
) -> m.BreakpointSpec:
    access = parse_access(args.get("access", m.Access.WRITE))
    pid, tid = args.get("pid", 0), args.get("tid", 0)
    if scope is None:
        if tid:
            scope = m.Scope.THREAD
        elif pid:
            scope = m.Scope.PROCESS
        else:
            raise ValueError("scope: give pid, tid or scope='kernel'")
    length = args.get("length")
    if length is None:
        # A named location's length is the broker's to find (its DWARF type, issue 13).
        length = 0 if access is m.Access.EXEC or symbol else 8
    return m.BreakpointSpec(
        scope=parse_scope(scope),
        pid=pid,
        tid=tid,
        address=address,
        length=length,
        access=access,
        priority=parse_priority(args.get("priority")),
        action=parse_action(action),
        filter=make_filter(
            changed_only=args.get("changed_only", False),
            equals=equals,
            ignore_first=ignore_first,
            stop_after=args.get("stop_after", 0),
            length=length,
        ),
        symbol=symbol,
        nonstop=args.get("nonstop", False),
        call_chain=args.get("call_chain", False),
    )


def _refuse_unknown(call: str, given: Mapping[str, object], known: frozenset[str]) -> None:
    # A keyword a type checker would catch must not be dropped silently for a caller
    # without one: refused at run time as a misspelt keyword always was.
    for name in given:
        if name not in known:
            raise TypeError(f"{call}() got an unexpected keyword argument {name!r}")
