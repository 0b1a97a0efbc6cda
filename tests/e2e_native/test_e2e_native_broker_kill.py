"""Issue 9 item 4: what a ``kill -9`` of the broker does to the targets it traces, through
a real ``hwbkptd --machine native`` (perf arming) and real C targets. The death rates
themselves are measured by kill_rate.py (its 50-run loops are the soak tests here)."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from kill_rate import death_rate
from native_e2e_support import Target, expect_event, native_daemon

import hwbkpt

pytestmark = [pytest.mark.native, pytest.mark.e2e]


def test_item4_the_tracer_thread_runs_in_real_time_and_launches_do_not(
    tmp_path: Path, bins: dict[str, str]
) -> None:
    """How long a trap's stop lasts before the tracer collects it is how likely a kill -9
    kills the target: the tracer thread (TracerPid names it) runs SCHED_FIFO; what it
    launches does not inherit that."""
    d = native_daemon(tmp_path, "perf")
    try:
        with d.client() as client:
            s = client.open_session("rt")
            pid = s.launch_process([bins["writer"], "1", "0"])
            tracer = tracer_thread(pid)
            assert tracer != d.proc.pid  # a thread of the broker, not its main one
            assert os.sched_getscheduler(tracer) & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO
            assert os.sched_getscheduler(pid) == os.SCHED_OTHER
            assert os.sched_getscheduler(d.proc.pid) == os.SCHED_OTHER
            s.close()
    finally:
        d.stop()


def tracer_thread(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("TracerPid:"))


def test_a_halted_thread_survives_a_broker_kill(tmp_path: Path, bins: dict[str, str]) -> None:
    """The tracer collects a HALT trap's stop (waitpid) before holding the thread, which
    clears the stop's signal: the broker's death resumes it without a SIGTRAP, and with
    its slots closed it runs to its end."""
    d = native_daemon(tmp_path, "perf")
    target = Target([bins["writer"], "200", "1000"])
    try:
        with d.client() as client:
            s = client.open_session("halter")
            s.watch(target.address, pid=target.pid, halt=True)
            target.send("g")
            hit = expect_event(s, "hit").payload
            assert isinstance(hit, hwbkpt.Hit)
            assert (hit.halted, hit.value_int) == (True, 1)
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(10)
        rc, out = target.finish()
        assert (rc, out.strip()) == (0, "done 200")
    finally:
        target.kill()
        d.stop()


def test_item4_info_states_the_measured_kill_death_rates(tmp_path: Path) -> None:
    """`info` says how often a kill -9 killed a NOTIFY target, as measured (docs/decisions.md)."""
    d = native_daemon(tmp_path, "perf")
    try:
        with d.client() as client:
            notes = client.describe().notes
    finally:
        d.stop()
    (note,) = [n for n in notes if "kill -9" in n and "perf arming" in n]
    rates = re.findall(r"\d+ to \d+ of 50 runs at (1 ms|100 us)", note)
    assert set(rates) == {"1 ms", "100 us"}, note
    assert "--nonstop" in note


#: Deaths of 50 allowed: `info` says 7 to 11 at 1 ms and 17 to 23 at 100 us
#: (docs/decisions.md), with room for a busier machine; a tracer in normal priority
#: measured 32 and 47.
_MOST_DEATHS = {1000: 16, 100: 32}


@pytest.mark.soak
@pytest.mark.skipif(os.environ.get("HWBKPT_SOAK") != "1", reason="soak: set HWBKPT_SOAK=1")
@pytest.mark.parametrize("interval_us", sorted(_MOST_DEATHS, reverse=True))
def test_item4_kill_death_rate_fifty_runs(
    interval_us: int, tmp_path: Path, bins: dict[str, str]
) -> None:
    deaths = death_rate(bins, tmp_path, interval_us, 50)
    print(f"interval {interval_us} us: {len(deaths)} of 50 runs died")
    assert set(deaths) <= {-signal.SIGTRAP}, deaths
    assert len(deaths) <= _MOST_DEATHS[interval_us]
