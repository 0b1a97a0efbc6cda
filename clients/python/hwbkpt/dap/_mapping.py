"""Pure translations between DAP's data breakpoints and the broker's requests and events.

A ``dataId`` is what ``dataBreakpointInfo`` hands the editor and ``setDataBreakpoints``
gets back: ``addr:0x601040:8`` (an address and a byte count) or ``sym:NAME:0`` (a location the
broker resolves; 0 bytes: the size of its type). ``condition`` and ``hitCondition``
become the broker's filters (hwbkpt.v1.Filter):

- condition ``changed`` -> changed_only; ``== V``, ``value == V`` or ``V`` -> equals V
  (the region's bytes, little-endian);
- hitCondition ``> N`` -> ignore the first N hits; ``>= N`` or ``N`` -> ignore N-1;
  ``== N`` -> ignore N-1 and stop after one (the broker then removes the request);
  ``ignore N`` -> ignore N; ``stop after N`` -> stop after N reported hits;
  ``% N`` or ``every N`` -> every Nth hit: the broker has no such filter, so the adapter
  resumes the other hits itself (``every``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hwbkpt import models as m
from hwbkpt._args import value_bytes

__all__ = [
    "ACCESS_TYPES",
    "DataId",
    "HitRule",
    "access_of",
    "data_id_of",
    "describe_resolution",
    "displaced_message",
    "hit_output",
    "parse_data_id",
    "parse_hit_condition",
    "parse_number",
    "parse_value_condition",
]

#: DAP access type -> the broker's access.
ACCESS_TYPES: dict[str, m.Access] = {
    "read": m.Access.READ,
    "write": m.Access.WRITE,
    "readWrite": m.Access.READ_WRITE,
}
_DAP_ACCESS = {v: k for k, v in ACCESS_TYPES.items()}
_MAX_BYTES = 32


def parse_number(text: str) -> int:
    """A decimal or 0x-hex integer (``-`` allowed); ValueError otherwise."""
    return int(text.strip(), 0)


@dataclass(frozen=True, slots=True)
class DataId:
    """What a data breakpoint watches: an address or a name, and a byte count."""

    length: int
    address: int = 0
    symbol: str = ""

    def text(self) -> str:
        if self.symbol:
            return f"sym:{self.symbol}:{self.length}"
        return f"addr:{self.address:#x}:{self.length}"

    def describe(self) -> str:
        where = self.symbol or f"{self.address:#x}"
        if not self.length:
            return f"{where} (the size of its type)"
        return f"{where} ({self.length} byte{'s' if self.length != 1 else ''})"


def data_id_of(name: str, length: int | None, as_address: bool) -> DataId:
    """``dataBreakpointInfo``'s name (an address expression or a variable name) and bytes.

    A name that reads as a number is an address (``asAddress`` or not; 8 bytes unless
    given). Any other is a location for the broker to resolve in the target (``counter``,
    ``&cfg.limit``, ``libc.so.6!environ``), sent as written; without a byte count the
    broker sizes it from its type (length 0).
    """
    if length is not None and not 1 <= length <= _MAX_BYTES:
        raise ValueError(f"bytes: {length} is not 1..{_MAX_BYTES}")
    text = name.strip()
    try:
        address = parse_number(text)
    except ValueError:
        if as_address:
            raise ValueError(f"name: {name!r} is not an address (0x... or decimal)") from None
        if not text or any(c.isspace() for c in text):
            raise ValueError(f"name: {name!r} is neither an address nor a variable name") from None
        return DataId(length=length or 0, symbol=text)
    if address < 0:
        raise ValueError(f"name: {name!r} is a negative address")
    return DataId(length=length or 8, address=address)


def describe_resolution(found: m.Resolution, length: int) -> str:
    """``counter at 0x5581...040, 8 bytes (long, named.c:12)``: a name as the broker found it."""
    size = length or found.length or 8
    name = found.symbol or found.location
    facts = ", ".join(x for x in (found.type_name, found.source) if x)
    module = f" in {found.module.rsplit('/', 1)[-1]}" if found.module else ""
    extra = f" ({facts})" if facts else ""
    return f"{name} at {found.address:#x}{module}, {size} byte{'s' if size != 1 else ''}{extra}"


def parse_data_id(text: str) -> DataId:
    kind, _, rest = text.partition(":")
    where, _, count = rest.rpartition(":")
    try:
        length = int(count)
        if kind == "addr":
            return DataId(length=length, address=int(where, 16))
        if kind == "sym" and where:
            return DataId(length=length, symbol=where)
    except ValueError:
        pass
    raise ValueError(f"dataId: {text!r} is not one of this adapter's (addr:... or sym:...)")


def access_of(access_type: str | None) -> m.Access:
    if access_type is None:
        return m.Access.WRITE
    try:
        return ACCESS_TYPES[access_type]
    except KeyError:
        raise ValueError(f"accessType: {access_type!r} is not read, write or readWrite") from None


_EQUALS = re.compile(r"^(?:(?:value|\*|val)\s*)?==?\s*(\S+)$")


def parse_value_condition(text: str | None, length: int) -> m.Filter:
    """``condition`` as the broker's value filter (changed / equals)."""
    cond = (text or "").strip()
    if not cond:
        return m.Filter()
    if cond.lower() in ("changed", "value changed", "changes"):
        return m.Filter(changed_only=True)
    match = _EQUALS.match(cond)
    token = match.group(1) if match else cond
    try:
        value = parse_number(token)
    except ValueError:
        raise ValueError(
            f"condition: {text!r}: expected 'changed', '== VALUE' or 'VALUE'"
        ) from None
    return m.Filter(equals=value_bytes(value, length))


@dataclass(frozen=True, slots=True)
class HitRule:
    """The hit condition's part for the broker, and the adapter's own (every Nth hit)."""

    ignore_first: int = 0
    stop_after: int = 0
    every: int = 0


_HIT = re.compile(r"^(>=|==|>|%|ignore|every|stop\s+after|after)?\s*(\d+)$", re.I)


def parse_hit_condition(text: str | None) -> HitRule:
    cond = (text or "").strip()
    if not cond:
        return HitRule()
    match = _HIT.match(cond)
    if match is None:
        raise ValueError(
            f"hitCondition: {text!r}: expected N, '>= N', '> N', '== N', '% N', "
            "'ignore N', 'every N' or 'stop after N'"
        )
    op = " ".join((match.group(1) or ">=").lower().split())
    n = int(match.group(2))
    if op in ("%", "every"):
        if n < 1:
            raise ValueError(f"hitCondition: {text!r}: every N needs N >= 1")
        return HitRule(every=n)
    if op in (">", "ignore", "after"):
        return HitRule(ignore_first=n)
    if op == "stop after":
        if n < 1:
            raise ValueError(f"hitCondition: {text!r}: stop after N needs N >= 1")
        return HitRule(stop_after=n)
    if n < 1:
        raise ValueError(f"hitCondition: {text!r}: hit counts start at 1")
    if op == "==":
        return HitRule(ignore_first=n - 1, stop_after=1)
    return HitRule(ignore_first=n - 1)


def displaced_message(ev: m.Displaced) -> str:
    who = f"session {ev.by_session!r}" if ev.by_session else "a holder outside the broker"
    by = f" (breakpoint {ev.by_breakpoint_id})" if ev.by_breakpoint_id else ""
    return (
        f"displaced: {who}{by} took the slot at priority {ev.by_priority}; "
        "it comes back when the slot is free"
    )


def _value_text(data: bytes) -> str:
    as_int = m.le_int(data)
    if as_int is not None:
        return f"{as_int} ({as_int:#x})"
    return data.hex() or "?"


def hit_output(breakpoint_id: int, hit: m.Hit, where: str) -> str:
    """One line for a hit that did not stop (an ``output`` event)."""
    access = _DAP_ACCESS.get(hit.access, hit.access or "?") if hit.access else "?"
    old = f" (was {_value_text(hit.old_value)})" if hit.old_value else ""
    return (
        f"data breakpoint {breakpoint_id}: {access} of {hit.address:#x} by thread {hit.tid} "
        f"at {where}: value {_value_text(hit.value)}{old}\n"
    )
