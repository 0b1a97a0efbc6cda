"""Issue 14, item 4: SIGTERM under load. A native broker with hits flowing to several
clients (watch processes, a HALT session holding the target stopped, a session without
requests) exits 0 within 5 s; every client gets its final event; the target keeps running,
untraced; and a new broker started at once installs four requests on the same thread (no
slot was left armed: a leftover would show as EXTERNAL) and reports their hits."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from native_e2e_support import ARMINGS, Target, expect_event, native_daemon, until

import hwbkpt

pytestmark = [pytest.mark.native, pytest.mark.e2e]

STOP_WITHIN = 5.0


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _tracer(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("TracerPid:"))


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.mark.parametrize("arming", ARMINGS)
def test_item4_sigterm_under_load_then_a_new_broker_takes_over(
    tmp_path: Path, bins: dict[str, str], arming: str
) -> None:
    # Four variables written every 100 us, for as long as the test runs.
    target = Target([bins["writer"], str(10**9), "100", "4"])
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    # The ptrace NOTIFY path throughout: under debugreg arming the first broker's HALT
    # slot stays reserved in the target after its detach (the kernel keeps a ptrace
    # breakpoint until exec or exit), so a successor arming NOTIFY through perf events
    # (--notify bpf/auto) gets one slot fewer (docs/decisions.md).
    d = native_daemon(first_dir, arming, "--notify", "ptrace")
    try:
        pid, base = target.pid, target.address
        target.send("g")
        watches = [d.watch("--pid", str(pid), hex(base + 8 * i)) for i in range(2)]
        for w in watches:
            w.expect(event="hit")
        client = hwbkpt.Client(d.address)
        idle = client.open_session("idle")
        holder = client.open_session("holder")
        halt = holder.watch(base + 24, pid=pid, halt=True)
        expect_event(holder, "hit", where=lambda e: e.breakpoint_id == halt.id)
        until(lambda: _state(pid) in "tT", what="the target halted by the HALT hit")

        started = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(15) == 0, d.log()
        took = time.monotonic() - started
        assert took < STOP_WITHIN, f"SIGTERM to exit took {took:.2f}s"

        for w in watches:
            assert w.wait(10) == 0, w.stderr
            assert (w.seen[-1]["event"], w.seen[-1]["reason"]) == ("removed", "shutdown")
        for session, owned in ((idle, ()), (holder, (halt.id,))):
            rest = list(session.events(timeout=5))
            removed = [(e.breakpoint_id, e.payload) for e in rest if e.kind == "removed"]
            assert removed == [(rid, hwbkpt.Removed("shutdown")) for rid in (*owned, 0)], rest
            assert rest[-1].breakpoint_id == 0
        client.close()

        # The target was let go: untraced, no longer stopped, still writing.
        assert target.proc.poll() is None
        assert _tracer(pid) == 0
        until(lambda: _state(pid) not in "tT", what="the halted target resumed")
        ticks = _cpu_ticks(pid)
        until(lambda: _cpu_ticks(pid) > ticks, what="the target running on")

        d = native_daemon(second_dir, arming, "--notify", "ptrace")
        with hwbkpt.Client(d.address) as c, c.open_session("successor") as s:
            bps = [s.watch(base + 8 * i, pid=pid) for i in range(4)]
            assert [bp.state for bp in bps] == [hwbkpt.BreakpointState.INSTALLED] * 4, bps
            hit_ids: set[int] = set()
            deadline = time.monotonic() + 10
            while hit_ids != {bp.id for bp in bps} and time.monotonic() < deadline:
                ev = s.next_event(1.0)
                if ev is not None and ev.kind == "hit":
                    hit_ids.add(ev.breakpoint_id)
            assert hit_ids == {bp.id for bp in bps}
    finally:
        target.kill()
        d.stop()
