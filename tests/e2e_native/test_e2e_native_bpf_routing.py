"""Issue 11 routing under the default ``hwbkptd --notify auto``: NOTIFY requests go to the BPF
arming (detected at start by a probe program), HALT requests to ptrace, and a process is
ptraced only while a HALT request needs it (``info`` says which serves what and why).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from native_e2e_support import (
    Daemon,
    Target,
    expect_event,
    native_daemon,
    native_reason,
    tracer_pid,
    until,
)

import hwbkpt

pytestmark = [pytest.mark.native, pytest.mark.e2e]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, bins: dict[str, str]) -> Iterator[Daemon]:
    assert not native_reason()
    d = native_daemon(tmp_path_factory.mktemp("hwbkptd-auto"))  # no --notify: the default
    yield d
    assert d.stop() == 0, d.log()


def _hit_value(session: hwbkpt.Session, bp_id: int) -> tuple[int, int, bool]:
    ev = expect_event(session, "hit", where=lambda e: e.breakpoint_id == bp_id)
    assert isinstance(ev.payload, hwbkpt.Hit)
    return ev.payload.value_int, ev.payload.old_value_int, ev.payload.value_late


def test_item1_auto_is_the_default_and_info_says_who_serves_what(daemon: Daemon) -> None:
    (info,) = daemon.cli_json("info")
    parts = {m["name"]: m for m in info["mechanisms"]}
    assert set(parts) == {"ptrace", "perf-kernel", "bpf"}
    assert parts["bpf"]["available"]
    notes = info["notes"]
    bpf_notes = " ".join(n for n in notes if n.startswith("bpf: "))
    assert "serves non-stop requests and NOTIFY requests (--notify bpf: auto: " in bpf_notes
    assert "hit program loaded and linked to a breakpoint event" in bpf_notes
    ptrace_notes = " ".join(n for n in notes if n.startswith("ptrace: "))
    assert "serves HALT requests and launch holds (--notify bpf: auto: " in ptrace_notes
    assert "launch holds and NOTIFY requests" not in ptrace_notes


def test_item2_ptraced_only_while_a_halt_request_needs_it(
    daemon: Daemon, vars_target: Target
) -> None:
    t = vars_target
    with daemon.client() as client:
        session = client.open_session("item2")
        watch = session.watch(t.address, pid=t.pid)
        assert watch.state is hwbkpt.BreakpointState.INSTALLED
        assert tracer_pid(t.pid) == 0  # a NOTIFY watch alone never ptraces
        t.write(0, 11)
        assert _hit_value(session, watch.id) == (11, 0, False)
        assert tracer_pid(t.pid) == 0

        halt = session.watch(t.address + 8, pid=t.pid, halt=True)
        assert halt.state is hwbkpt.BreakpointState.INSTALLED
        assert tracer_pid(t.pid) == daemon.proc.pid  # the HALT request attaches
        t.write(0, 12)  # NOTIFY still through BPF meanwhile: exact, not stopped
        assert _hit_value(session, watch.id) == (12, 11, False)

        session.remove(halt.id)
        until(lambda: tracer_pid(t.pid) == 0, 10, "ptrace to let go after the last HALT")
        # The NOTIFY watch goes on, exactly, without ptrace.
        for value in (13, 14, 15):
            t.write(0, value)
            assert _hit_value(session, watch.id) == (value, value - 1, False)
        assert tracer_pid(t.pid) == 0
        (bp,) = session.list()
        assert (bp.id, bp.state) == (watch.id, hwbkpt.BreakpointState.INSTALLED)

        halt = session.watch(t.address + 8, pid=t.pid, halt=True)  # and attaches again
        assert tracer_pid(t.pid) == daemon.proc.pid
        t.write(1, 1)
        ev = expect_event(session, "hit", where=lambda e: e.breakpoint_id == halt.id)
        assert isinstance(ev.payload, hwbkpt.Hit)
        session.close()
    until(lambda: tracer_pid(t.pid) == 0, 10, "the broker to let the process go")
    assert t.proc.poll() is None
