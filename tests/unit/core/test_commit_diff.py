"""What each owner was last told, and the net events of one transaction against it."""

from __future__ import annotations

from hwbkptd.core.arbiter import RequestChange
from hwbkptd.core.commit_diff import EXTERNAL_HOLDER, Current, Displacer, OwnerDiff
from hwbkptd.core.events import Displaced, Removed, Restored, StateChanged, TargetExited
from hwbkptd.core.model import PendingReason, RequestState

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
    installed: set[int], state: RequestState, reason: PendingReason = PendingReason.NONE
) -> Current:
    return Current(state, reason, tuple(sorted(installed)), ())


def live(
    rid: int,
    installed: set[int],
    state: RequestState = INST,
    reason: PendingReason = PendingReason.NONE,
) -> OwnerDiff:
    """A diff whose owner of ``rid`` was told ``installed`` in ``state``."""
    diff = OwnerDiff()
    diff.created(rid)
    diff.absorb(change(rid, installed), who)
    diff.drain(lambda r: now(installed, state, reason))
    return diff


def test_displacement_names_the_displacer_per_tid() -> None:
    net = live(1, {10, 11, 12})
    net.absorb(change(1, {10}, displaced={11, 12}, by={7: {11}, 8: {12}}), who)
    ((rid, events),) = net.drain(lambda r: now({10}, RequestState.PARTIAL, PendingReason.PRIORITY))
    assert rid == 1
    assert events == [
        Displaced((11,), 7, "S7", 75),
        Displaced((12,), 8, "S8", 75),
        StateChanged(RequestState.PARTIAL, PendingReason.PRIORITY, (10,), ()),
    ]
    assert not net
    assert net.installed(1) == frozenset({10})


def test_a_displacement_undone_in_the_same_transaction_is_not_reported() -> None:
    net = live(1, {10})
    net.absorb(change(1, set(), displaced={10}), who)
    net.absorb(change(1, {10}, restored={10}), who)
    assert net.drain(lambda r: now({10}, INST)) == [(1, [])]


def test_external_displacement_and_restore_against_what_was_told() -> None:
    net = live(1, {10})
    net.absorb(change(1, set(), displaced={10}), who)
    ((_, events),) = net.drain(lambda r: now(set(), PEND, PendingReason.EXTERNAL))
    assert events == [
        Displaced((10,), 0, EXTERNAL_HOLDER, 0),
        StateChanged(PEND, PendingReason.EXTERNAL, (), ()),
    ]
    net.absorb(change(1, {10}, restored={10}), who)
    ((_, events),) = net.drain(lambda r: now({10}, INST))
    assert events == [Restored((10,)), StateChanged(INST, PendingReason.NONE, (10,), ())]


def test_creation_always_reports_the_state_and_removal_reports_only_removed() -> None:
    net = live(2, {10})
    net.created(1)
    net.absorb(change(1, {10}), who)
    net.removed(2, "target_exited", TargetExited(5, 0, 1))
    net.removed(2, "client")  # the first reason wins
    net.absorb(change(2, set()), who)  # a change after removal is not a live request's
    assert net.touched() == {}
    out = net.drain(lambda r: now({10}, INST) if r == 1 else None)
    assert out == [
        (1, [StateChanged(INST, PendingReason.NONE, (10,), ())]),
        (2, [TargetExited(5, 0, 1), Removed("target_exited")]),
    ]
    assert net.installed(2) == frozenset()


def test_thread_birth_is_not_a_restore_and_touched_lists_changed_requests() -> None:
    net = live(1, {10}, RequestState.PARTIAL, PendingReason.PRIORITY)
    net.absorb(change(1, {10, 11}), who)
    assert net.touched() == {1: frozenset({10})}
    assert net.drain(lambda r: now({10, 11}, INST)) == [
        (1, [StateChanged(INST, PendingReason.NONE, (10, 11), ())])
    ]


def test_a_birth_that_changes_nothing_told_is_absorbed_without_an_entry() -> None:
    net = live(1, {10})
    net.absorb(change(1, {10, 11}), who)
    assert not net
    assert net.installed(1) == frozenset({10, 11})
    assert net.drain(lambda r: now({10, 11}, INST)) == []
