"""Per-request hit bookkeeping: counts, values before and after, filters (DESIGN section 3).

The broker attributes a trap to the requests that held the slot under the
trap's generation; for each of them ``count_hit`` decides whether the hit is
reported and builds the event. The value before a hit is the last value the
broker knew for the request: read at installation, then the value after every
hit, filtered or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hwbkptd.core.events import Hit
from hwbkptd.core.filters import passes
from hwbkptd.core.mechanism import HitReport
from hwbkptd.core.model import Access, Action, Request

__all__ = ["HitState", "count_hit", "count_run", "old_value_at", "value_at"]


@dataclass(slots=True)
class HitState:
    """A request's counts and last value; its settings (access, action, filter, call
    chains) are read from the one request record, ``model.Request``, never copied here."""

    #: A read watch armed as read/write (x86): hits that wrote are not this request's.
    emulated_read: bool = False
    last_value: bytes = b""
    #: Hits attributed to the request, before filters.
    hit_count: int = 0
    #: Hits reported to the session, after filters.
    reported_count: int = 0
    #: stop_after was reached; the request is on its way out and reports nothing more.
    stopped: bool = False


def value_at(report: HitReport, index: int) -> bytes:
    """The value of the ``index``-th region of the slot entry (b"" where none was read)."""
    return report.values[index] if 0 <= index < len(report.values) else b""


def old_value_at(report: HitReport, index: int) -> bytes | None:
    """The value before the access of the ``index``-th region, when the mechanism read it."""
    olds = report.old_values
    return olds[index] if 0 <= index < len(olds) else None


def _chain(report: HitReport) -> tuple[tuple[int, str], ...]:
    symbols = report.call_chain_symbols
    return tuple(
        (ip, symbols[i] if i < len(symbols) else "") for i, ip in enumerate(report.call_chain)
    )


_READ_WRITE = Access.READ_WRITE  # enum member lookups are slow on 3.11; this runs per hit
_WRITE = Access.WRITE


def _unsaid_access(access: Access, emulated_read: bool, value: bytes, old: bytes) -> Access:
    """The access when the hardware did not say (x86: DR6 and perf samples do not tell).

    A watch that triggers on one kind only tells it. Otherwise a changed value means
    the access wrote; an unchanged one (or an unknown value before) is a read or a
    store of the same value, which no value comparison tells apart: READ_WRITE stands
    for "read or write" on a hit.
    """
    if access is not _READ_WRITE and not emulated_read:
        return access
    if old and value and value != old:
        return _WRITE
    return _READ_WRITE


def count_hit(
    request: Request,
    state: HitState,
    report: HitReport,
    value: bytes,
    old_value: bytes | None = None,
) -> Hit | None:
    """Count one attributed hit; the event to report, or None when it is not reported.

    ``request`` is the request as it stands now (a modify replaces it): the owner of the
    access, action, filter and call-chain settings. ``old_value``: the value before the
    access when the mechanism read it at the trap (hits filtered in the kernel never
    reached the broker, so its own last value is stale). ``report.skipped`` hits filtered
    in the kernel are counted first.
    """
    if report.skipped:
        state.hit_count += report.skipped
    if report.count_only:
        return None
    old = state.last_value if old_value is None else old_value
    state.last_value = value
    if state.stopped:
        return None
    access = report.access
    if access is None:
        access = _unsaid_access(request.access, state.emulated_read, value, old)
    if state.emulated_read and access is _WRITE:
        # Armed read/write for a read watch: a write (seen as a changed value when the
        # hardware does not tell) is not a read. gdb filters the same way.
        return None
    state.hit_count += 1
    if not passes(request.filter, hit_count=state.hit_count, value=value, old_value=old):
        return None
    state.reported_count += 1
    # Positional (pid, tid, cpu, ip, address, access, value, old_value, hit_count,
    # generation, halted, ip_symbol, value_late, call_chain): this runs once per hit per
    # holder, and keywords cost a quarter more. A kernel hit is attributed to the CPU
    # context but happened in some thread (task_tid).
    return Hit(
        report.pid,
        report.task_tid or report.tid,
        report.cpu,
        report.ip,
        report.address,
        access,
        value,
        old,
        state.hit_count,
        report.generation,
        report.halted and request.action is Action.HALT,
        report.ip_symbol,
        report.values_late,
        _chain(report) if request.call_chain else (),
    )


def count_run(
    request: Request,
    state: HitState,
    reports: Sequence[HitReport],
    index: int,
    reported: list[tuple[HitReport, Hit]],
) -> int:
    """``count_hit`` for each report in turn, for the holder of the ``index``-th region;
    appends the reported ``(report, hit)``. Stops after the hit that reaches the filter's
    ``stop_after`` (the caller removes the request): returns how many reports it took.

    The same decisions as ``count_hit`` per report (a unit test holds them equal), with
    the request's settings read once: a run of one slot's hits, the hit path under load.
    """
    flt = request.filter
    ignore_first = flt.ignore_first
    by_value = flt.changed_only or flt.equals is not None
    stop_after = flt.stop_after
    emulated = state.emulated_read
    said = request.access if request.access is not _READ_WRITE and not emulated else None
    halt = request.action is Action.HALT
    chain = request.call_chain
    append = reported.append
    taken = 0
    for report in reports:
        taken += 1
        if report.skipped:
            state.hit_count += report.skipped
        if report.count_only:
            continue
        values = report.values
        value = values[index] if index < len(values) else b""
        olds = report.old_values
        old = olds[index] if index < len(olds) else state.last_value
        state.last_value = value
        if state.stopped:
            continue
        access = report.access
        if access is None:
            # _unsaid_access, inline.
            if said is not None:
                access = said
            elif old and value and value != old:
                access = _WRITE
            else:
                access = _READ_WRITE
        if emulated and access is _WRITE:
            continue
        state.hit_count += 1
        # passes(), its count test inline (a count may step back: HitReport.skipped -1).
        if state.hit_count <= ignore_first or (
            by_value and not passes(flt, hit_count=state.hit_count, value=value, old_value=old)
        ):
            continue
        state.reported_count += 1
        hit = Hit(
            report.pid, report.task_tid or report.tid, report.cpu, report.ip, report.address,
            access, value, old, state.hit_count, report.generation, report.halted and halt,
            report.ip_symbol, report.values_late, _chain(report) if chain else (),
        )  # fmt: skip
        append((report, hit))
        if stop_after and state.reported_count >= stop_after:
            break
    return taken
