"""Kernel scope on the native machine, through gRPC: symbols from /proc/kallsyms, and what
this kernel cannot arm refused up front (issue 4, "Locations by name" and "Capabilities")."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from native_e2e_support import Daemon, expect_event, native_daemon
from native_support import kernel_addresses_refused, need_kernel_addresses

import hwbkpt

pytestmark = [pytest.mark.native, pytest.mark.e2e]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, bins: dict[str, str]) -> Iterator[Daemon]:
    # The ptrace NOTIFY path (perf-nonstop serves non-stop requests): what this machine's
    # info looked like before --notify auto; the auto default's info: test_e2e_native_bpf.
    d = native_daemon(tmp_path_factory.mktemp("hwbkptd"), "auto", "--notify", "ptrace")
    yield d
    assert d.stop() == 0, d.log()


def kallsyms(name: str) -> int | None:
    with open("/proc/kallsyms", encoding="ascii") as table:
        for line in table:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == name:
                return int(parts[0], 16)
    return None


def test_info_shows_the_native_machine(daemon: Daemon) -> None:
    (info,) = daemon.cli_json("info")
    assert (info["machine"], info["arch"]) == ("native", "x86_64")
    assert [(p["name"], p["slots"]) for p in info["pools"]] == [("dr", 4)]
    assert info["arming"] in ("perf", "debugreg")
    parts = {m["name"]: m for m in info["mechanisms"]}
    assert set(parts) == {"ptrace", "perf-kernel", "perf-nonstop"}
    assert parts["ptrace"]["available"]
    refused = kernel_addresses_refused()
    assert parts["perf-kernel"]["available"] == (not refused)
    if refused:
        assert parts["perf-kernel"]["reason"] == refused
        assert any(n.endswith(f"kernel addresses: refused ({refused})") for n in info["notes"])
    assert parts["perf-nonstop"]["available"]
    assert any(n.startswith("perf-nonstop: new processes") for n in info["notes"])
    assert any("kernel exec breakpoints" in n for n in info["notes"])
    text = daemon.cli("info").stdout
    assert "machine     native (x86_64)" in text
    assert "dr       4 slots" in text


def test_a_kernel_exec_request_is_refused_naming_kprobes(daemon: Daemon) -> None:
    (info,) = daemon.cli_json("info")
    if any("kernel exec breakpoints: allowed" in n for n in info["notes"]):
        pytest.skip("this kernel has kprobes: kernel exec breakpoints are allowed")
    with daemon.client() as c, c.open_session("kexec") as s:
        with pytest.raises(hwbkpt.HwbkptError) as err:
            s.set_breakpoint(scope="kernel", symbol="schedule", access="exec")
        assert err.value.code == "FAILED_PRECONDITION"
        assert "kprobes" in err.value.message
        assert s.list() == []


def test_kernel_requests_are_refused_with_the_kernels_reason_when_it_refuses_them(
    daemon: Daemon,
) -> None:
    """A kernel that refuses kernel addresses: the broker says so up front, changes nothing."""
    refused = kernel_addresses_refused()
    with daemon.client() as c, c.open_session("krefused") as s:
        if not refused:
            bp = s.watch("init_stack", kernel=True, access="rw")
            assert bp.state is hwbkpt.BreakpointState.INSTALLED
            return
        with pytest.raises(hwbkpt.HwbkptError) as err:
            s.watch("init_stack", kernel=True, access="rw")
        assert err.value.code == "FAILED_PRECONDITION"
        assert err.value.message.endswith(refused)
        assert s.list() == []
        assert c.slot_map().waiting == ()


def test_a_kernel_symbol_resolves_and_is_watched(daemon: Daemon) -> None:
    need_kernel_addresses()
    expected = kallsyms("init_stack") or kallsyms("__start_init_stack")
    assert expected is not None
    with daemon.client() as c, c.open_session("kdata") as s:
        bp = s.watch("init_stack", kernel=True, access="rw")
        assert (bp.spec.address, bp.spec.symbol) == (expected, "init_stack")
        assert bp.state is hwbkpt.BreakpointState.INSTALLED
        hit = expect_event(s, "hit", timeout=5)
        assert isinstance(hit.payload, hwbkpt.Hit)
        assert hit.payload.address == expected
        assert "+0x" in hit.payload.ip_symbol
        s.remove(bp.id)
        expect_event(s, "removed")


def test_kernel_call_chains_come_with_each_hit_when_asked(daemon: Daemon) -> None:
    need_kernel_addresses()
    with daemon.client() as c, c.open_session("chains") as s:
        plain = s.watch("init_stack", kernel=True, access="rw")
        chained = s.set_breakpoint(
            scope="kernel", symbol="init_stack", access="rw", call_chain=True
        )
        assert chained.spec.call_chain
        assert not plain.spec.call_chain
        assert chained.chunks == plain.chunks  # one slot, the chain for whoever asked
        seen: list[hwbkpt.Event] = []
        expect_event(s, "hit", 5, where=lambda e: e.breakpoint_id == chained.id, seen=seen)
        expect_event(s, "hit", 5, where=lambda e: e.breakpoint_id == plain.id, seen=seen)
        for ev in seen:
            hit = ev.payload
            if not isinstance(hit, hwbkpt.Hit):
                continue
            if ev.breakpoint_id == plain.id:
                assert hit.call_chain == ()
            else:
                assert len(hit.call_chain) >= 2
                assert hit.call_chain[0].ip == hit.ip
                assert all("+0x" in f.symbol for f in hit.call_chain[:2])
        # A user request cannot ask for a kernel call chain.
        with pytest.raises(hwbkpt.HwbkptError) as err:
            s.set_breakpoint(pid=1, address=0x1000, call_chain=True)
        assert (err.value.code, err.value.fields) == ("INVALID_ARGUMENT", ("spec.call_chain",))


def test_an_unknown_kernel_symbol_is_not_found(daemon: Daemon) -> None:
    with daemon.client() as c, c.open_session("nosym") as s:
        with pytest.raises(hwbkpt.HwbkptError) as err:
            s.watch("no_such_symbol_hwbkpt", kernel=True)
        assert err.value.code == "NOT_FOUND"
        assert err.value.fields == ("spec.symbol",)
        # User-space names resolve in the target's binaries: test_e2e_native_names.py.
