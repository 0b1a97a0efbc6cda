"""Composing the arbiter's changes of one transaction into net session events."""

from __future__ import annotations

from hwbkptd.core.arbiter import RequestChange
from hwbkptd.core.events import Displaced, Removed, Restored, StateChanged, TargetExited
from hwbkptd.core.model import PendingReason, RequestState
from hwbkptd.core.netchange import EXTERNAL_HOLDER, Current, Displacer, NetChanges

INST, PEND = RequestState.INSTALLED, RequestState.PENDING


def change(
    rid: int,
    installed: set[int],
    *,
    displaced: set[int] = set(),  # noqa: B006
    by: dict[int, set[int]] | None = None,
    restored: set[int] | None = None,
) -> RequestChange:
    if restored is None:
        restored = set()
    return RequestChange(
        request_id=rid,
        old_state=INST,
        new_state=INST if installed else PEND,
        reason=PendingReason.NONE,
        installed=frozenset(installed),
        pending=frozenset(),
        displaced=frozenset(displaced),
        displaced_by={k: frozenset(v) for k, v in (by or {}).items()},
        restored=frozenset(restored),
        gained=frozenset(),
        lost=frozenset(),
    )


def who(rid: int) -> Displacer:
    return Displacer(rid, f"S{rid}", 75)


def now(
    installed: set[int],
    state: RequestState,
    reason: PendingReason = PendingReason.NONE,
    told: tuple[RequestState, PendingReason] | None = (INST, PendingReason.NONE),
) -> Current:
    return Current(frozenset(installed), state, reason, tuple(sorted(installed)), (), told)


def test_displacement_names_the_displacer_per_tid() -> None:
    net = NetChanges()
    net.absorb(
        change(1, {10}, displaced={11, 12}, by={7: {11}, 8: {12}}), frozenset({10, 11, 12}), who
    )
    ((rid, events),) = net.drain(lambda r: now({10}, RequestState.PARTIAL, PendingReason.PRIORITY))
    assert rid == 1
    assert events == [
        Displaced((11,), 7, "S7", 75),
        Displaced((12,), 8, "S8", 75),
        StateChanged(RequestState.PARTIAL, PendingReason.PRIORITY, (10,), ()),
    ]
    assert not net


def test_a_displacement_undone_in_the_same_transaction_is_not_reported() -> None:
    net = NetChanges()
    net.absorb(change(1, set(), displaced={10}), frozenset({10}), who)
    net.absorb(change(1, {10}, restored={10}), frozenset(), who)
    assert net.drain(lambda r: now({10}, INST)) == [(1, [])]


def test_external_displacement_and_restore() -> None:
    net = NetChanges()
    net.absorb(change(1, set(), displaced={10}), frozenset({10}), who)
    ((_, events),) = net.drain(lambda r: now(set(), PEND, PendingReason.EXTERNAL))
    assert events[0] == Displaced((10,), 0, EXTERNAL_HOLDER, 0)
    net.absorb(change(1, {10}, restored={10}), frozenset(), who)
    ((_, events),) = net.drain(lambda r: now({10}, INST, told=(PEND, PendingReason.EXTERNAL)))
    assert events == [Restored((10,)), StateChanged(INST, PendingReason.NONE, (10,), ())]


def test_creation_always_reports_the_state_and_removal_reports_only_removed() -> None:
    net = NetChanges()
    net.created(1)
    net.absorb(change(1, {10}), frozenset(), who)
    net.removed(2, frozenset({10}), "target_exited", TargetExited(5, 0, 1))
    net.removed(2, frozenset(), "client")  # the first reason wins
    assert net.touched() == {}
    out = net.drain(lambda r: now({10}, INST, told=None) if r == 1 else None)
    assert out == [
        (1, [StateChanged(INST, PendingReason.NONE, (10,), ())]),
        (2, [TargetExited(5, 0, 1), Removed("target_exited")]),
    ]


def test_thread_birth_is_not_a_restore_and_touched_lists_changed_requests() -> None:
    net = NetChanges()
    net.absorb(change(1, {10, 11}), frozenset({10}), who)
    assert net.touched() == {1: frozenset({10})}
    assert net.drain(lambda r: now({10, 11}, INST)) == [(1, [])]
