"""What a hit says about its access, through the whole stack (issue 9 items 2, 3 and 7): a
real ``hwbkptd --machine native`` (default arming), real C targets, ptrace and non-stop."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from native_e2e_support import Daemon, Target, expect_event, native_daemon, native_reason

import hwbkpt

pytestmark = [pytest.mark.native, pytest.mark.e2e]

#: Item 2: threads started after the watch is set, one after the other. Before the fix
#: ptrace hits went wrong in a few threads of 20 (a race), non-stop ones in every thread.
N_THREADS = 20
MECHANISMS = pytest.mark.parametrize("nonstop", [False, True], ids=["ptrace", "nonstop"])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, bins: dict[str, str]) -> Iterator[Daemon]:
    assert not native_reason()
    d = native_daemon(tmp_path_factory.mktemp("hwbkptd-values"))
    yield d
    assert d.stop() == 0, d.log()


def _hit(session: hwbkpt.Session, bp: hwbkpt.Breakpoint) -> hwbkpt.Hit:
    ev = expect_event(session, "hit", where=lambda e: e.breakpoint_id == bp.id)
    assert isinstance(ev.payload, hwbkpt.Hit)
    return ev.payload


@MECHANISMS
def test_item2_a_new_threads_first_write_has_the_value_before_it(
    daemon: Daemon, bins: dict[str, str], nonstop: bool
) -> None:
    """Each thread, born after the watch is set, writes its number first thing: the old
    value of its hit is the previous thread's number (what the broker saw), never its own."""
    target = Target([bins["threads"], str(N_THREADS), "step"])
    try:
        with daemon.client() as client:
            s = client.open_session("item2")
            bp = s.watch(target.address, pid=target.pid, nonstop=nonstop)
            assert bp.installed_tids == (target.pid,)
            seen: list[tuple[int | None, int | None]] = []
            tids: set[int] = set()
            for i in range(1, N_THREADS + 1):
                target.send("g")  # thread i starts, writes i, ends
                assert target.readline() == f"ended {i}"
                hit = _hit(s, bp)
                tids.add(hit.tid)
                seen.append((hit.old_value_int, hit.value_int))
            assert target.finish()[0] == 0
    finally:
        target.kill()
    assert target.pid not in tids
    assert len(tids) == N_THREADS
    assert seen == [(i - 1, i) for i in range(1, N_THREADS + 1)]


@MECHANISMS
def test_item3_hits_are_stamped_with_wall_clock_time(
    daemon: Daemon, vars_target: Target, nonstop: bool
) -> None:
    t = vars_target
    with daemon.client() as client:
        s = client.open_session("item3")
        bp = s.watch(t.address, pid=t.pid, nonstop=nonstop)
        before = datetime.now(UTC)
        t.write(0, 5)
        ev = expect_event(s, "hit", where=lambda e: e.breakpoint_id == bp.id)
        after = datetime.now(UTC)
    assert before <= ev.time <= after, (before, ev.time, after)


@MECHANISMS
def test_item7_unchanged_value_is_read_or_write_and_a_change_is_a_write(
    daemon: Daemon, vars_target: Target, nonstop: bool
) -> None:
    """x86 does not say what an access did: a read watch (armed read/write) and a
    read/write watch tell it by the value."""
    t = vars_target
    with daemon.client() as client:
        s = client.open_session("item7")
        rd = s.watch(t.address, pid=t.pid, access="read", nonstop=nonstop)
        rw = s.watch(t.address + 8, pid=t.pid, access="rw", nonstop=nonstop)
        t.write(0, 0)  # the value it holds: a read or a store of the same value
        same = _hit(s, rd)
        t.write(0, 3)  # a write, which a read watch does not report
        t.write(0, 3)
        again = _hit(s, rd)
        t.write(1, 9)
        changed = _hit(s, rw)
        t.write(1, 9)
        unchanged = _hit(s, rw)
    assert (same.access, same.old_value_int, same.value_int) == (hwbkpt.Access.READ_WRITE, 0, 0)
    assert "same value" in same.access_reason
    assert (again.access, again.old_value_int, again.value_int) == (hwbkpt.Access.READ_WRITE, 3, 3)
    assert again.hit_count == 2  # the store of 3 was not counted as a read
    assert (changed.access, changed.old_value_int, changed.value_int) == (hwbkpt.Access.WRITE, 0, 9)
    assert unchanged.access is hwbkpt.Access.READ_WRITE


def test_item7_watch_prints_read_or_write_with_the_reason(
    daemon: Daemon, vars_target: Target
) -> None:
    t = vars_target
    w = daemon.watch("--pid", str(t.pid), hex(t.address), "--access", "rw")
    t.write(0, 4)
    t.write(0, 4)
    changed = w.expect(event="hit")
    same = w.expect(event="hit")
    assert w.interrupt() == 130  # Ctrl-C: the exit code of an interrupted watch
    assert (changed["access"], changed["value"], changed["old_value"]) == ("write", 4, 0)
    assert "access_reason" not in changed
    assert (same["access"], same["value"], same["old_value"]) == ("read_or_write", 4, 4)
    assert same["access_reason"] == "the value did not change: a read, or a store of the same value"
    (info,) = daemon.cli_json("info")
    assert any(
        "'read or write'" in note and "store of the same value" in note for note in info["notes"]
    )
