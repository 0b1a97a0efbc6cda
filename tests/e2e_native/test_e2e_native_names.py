"""Issue 13: watch what users name, and hits in their words, under a real native broker on
tests/c/named.c (PIE and not) and its library named_lib.c."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from c_programs import C_DIR
from native_e2e_support import (
    ARMINGS,
    HWBKPT,
    Daemon,
    Target,
    expect_event,
    native_daemon,
    tracer_pid,
)

import hwbkpt

pytestmark = [pytest.mark.native, pytest.mark.e2e]

PROGRAMS = ("named", "named-pie")


def source_line(text: str, file: str = "named.c") -> str:
    """``named.c:N`` of the first source line containing ``text``."""
    lines = (C_DIR / file).read_text().splitlines()
    return f"{file}:{next(i for i, line in enumerate(lines, 1) if text in line)}"


@pytest.fixture(params=ARMINGS)
def arming(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def daemon(tmp_path_factory: pytest.TempPathFactory, bins: dict[str, str]) -> Iterator[Daemon]:
    d = native_daemon(tmp_path_factory.mktemp("hwbkptd"))
    yield d
    assert d.stop() == 0, d.log()


def start(bins: dict[str, str], program: str) -> Target:
    """named.c running past its "ready"; ``address`` is the run-time address of counter."""
    t = Target([bins[program]])
    assert t.readline() == "ready"
    return t


def command(t: Target, line: str) -> None:
    t.send(line + "\n")
    assert t.readline() == "ok"


def _hit(session: hwbkpt.Session, value: int | None = None) -> hwbkpt.Hit:
    ev = expect_event(
        session,
        "hit",
        where=lambda e: value is None or e.payload.value_int == value,  # type: ignore[union-attr]
    )
    assert isinstance(ev.payload, hwbkpt.Hit)
    return ev.payload


@pytest.mark.parametrize("program", PROGRAMS)
def test_item1_watch_by_name_equals_watch_by_address(
    arming: str, program: str, tmp_path_factory: pytest.TempPathFactory, bins: dict[str, str]
) -> None:
    """``hwbkpt watch --pid P counter`` takes the slot watching counter's address would, and
    its hits say ``counter``, ``bump_counter+0x..`` and ``named.c:LINE``."""
    d = native_daemon(tmp_path_factory.mktemp("hwbkptd"), arming)
    t = start(bins, program)
    try:
        w = d.watch("--pid", str(t.pid), "counter")
        (thread,) = d.client().slot_map(t.pid).threads
        chunks = [s.chunk for s in thread.slots if s.chunk is not None]
        assert [(c.address, c.length) for c in chunks] == [(t.address, 8)]
        command(t, "c 5")
        hit = w.expect(event="hit")
        assert (hit["address"], hit["value"], hit["old_value"]) == (t.address, 5, 0)
        assert hit["address_symbol"] == "counter"
        assert hit["ip_symbol"].startswith("bump_counter+0x"), hit
        assert hit["ip_line"] == source_line("counter = value;")
        assert w.interrupt() == 130
    finally:
        t.kill()
        assert d.stop() == 0, d.log()


def test_item1_the_cli_prints_the_words(daemon: Daemon, bins: dict[str, str]) -> None:
    """Text output: the resolution first, then hits with ``<counter>`` and the line."""
    t = start(bins, "named-pie")
    try:
        w, out = hwbkpt_text_watch(daemon, "--pid", str(t.pid), "counter", "--count", "1")
        command(t, "c 9")
        out += w.communicate(timeout=20)[0]
        assert f"counter is counter at {t.address:#x} (8 bytes, long int" in out, out
        assert f"{t.address:#x} <counter>" in out, out
        assert "<bump_counter+0x" in out, out
        assert source_line("counter = value;") in out, out
    finally:
        t.kill()


def hwbkpt_text_watch(daemon: Daemon, *args: str) -> tuple[subprocess.Popen[str], str]:
    """``hwbkpt watch ARGS`` in text mode, once it printed the state SetBreakpoint answered
    (the request is armed); with the lines printed so far."""
    proc = subprocess.Popen(
        [str(HWBKPT), "--server", daemon.address, "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    head = ""
    while not head.splitlines()[-1:] or not head.splitlines()[-1].startswith("#0 "):
        line = proc.stdout.readline()
        assert line, proc.communicate(timeout=5)
        head += line
    return proc, head


@pytest.mark.parametrize("program", PROGRAMS)
def test_item2_a_struct_is_split_and_each_hit_names_its_member(
    daemon: Daemon, program: str, bins: dict[str, str]
) -> None:
    t = start(bins, program)
    try:
        with daemon.client() as c:
            s = c.open_session("names")
            bp = s.watch("&cfg", pid=t.pid)
            r = bp.resolution
            assert r is not None
            assert (r.symbol, r.length, r.type_name) == ("cfg", 24, "struct config")
            assert [m.name for m in r.members] == ["cfg.mode", "cfg.flags", "cfg.limit", "cfg.tag"]
            assert bp.spec.length == 24
            assert sum(ch.length for ch in bp.chunks) == 24
            assert len(bp.chunks) == 3
            assert bp.chunks[0].address == r.address
            assert bp.state is hwbkpt.BreakpointState.INSTALLED
            for line, member in (
                ("l 7", "cfg.limit"),
                ("f 2", "cfg.flags"),
                ("m 3", "cfg.mode"),
                ("t 65", "cfg.tag"),
            ):
                command(t, line)
                hit = _hit(s)
                assert hit.member == member, (line, hit)
                assert hit.address_symbol.startswith("cfg"), hit
    finally:
        t.kill()


def test_item2_members_and_elements_resolve(daemon: Daemon, bins: dict[str, str]) -> None:
    """&cfg.limit and &table[3]: their own addresses and lengths from DWARF."""
    t = start(bins, "named-pie")
    try:
        with daemon.client() as c:
            s = c.open_session("names")
            cfg = s.watch("&cfg", pid=t.pid).resolution
            limit = s.watch("&cfg.limit", pid=t.pid)
            table3 = s.watch("&table[3]", pid=t.pid)
            assert cfg is not None
            assert limit.resolution is not None
            assert limit.resolution.address == cfg.address + 8
            assert limit.spec.length == 8
            assert table3.resolution is not None
            assert table3.resolution.symbol == "table[3]"
            command(t, "a 3 11")
            hit = _hit(s, 11)
            assert hit.address == table3.resolution.address
            assert hit.address_symbol == "table+0x18"
    finally:
        t.kill()


def test_item3_launch_watches_a_pie_program_by_name(daemon: Daemon, bins: dict[str, str]) -> None:
    """``hwbkpt launch --watch counter -- ./named-pie count 3``: resolved at the exec stop,
    where the load bias is known, so the first write is caught."""
    done = daemon.cli(
        "--json", "launch", "--watch", "counter", "--count", "1", "--timeout", "30", "--",
        bins["named-pie"], "count", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    hits = [r for r in records if r["event"] == "hit"]
    assert hits, records
    assert (hits[0]["value"], hits[0]["old_value"]) == (1, 0)
    assert hits[0]["address_symbol"] == "counter"
    assert hits[0]["ip_symbol"].startswith("bump_counter+0x")


def _refused(
    s: hwbkpt.Session, location: str, pid: int, access: str = "write"
) -> hwbkpt.HwbkptError:
    with pytest.raises(hwbkpt.HwbkptError) as err:
        s.watch(location, pid=pid, access=access)
    return err.value


def test_item6_unknown_and_malformed_names(daemon: Daemon, bins: dict[str, str]) -> None:
    t = start(bins, "named")
    try:
        with daemon.client() as c:
            s = c.open_session("names")
            err = _refused(s, "no_such_name", t.pid)
            assert (err.code, err.fields) == ("NOT_FOUND", ("spec.symbol",))
            assert "no_such_name" in err.message
            err = _refused(s, "&cfg.nope", t.pid)
            assert (err.code, err.fields) == ("INVALID_ARGUMENT", ("spec.symbol",))
            assert "no member 'nope'" in err.message
            err = _refused(s, "&table[8]", t.pid)
            assert (err.code, err.fields) == ("INVALID_ARGUMENT", ("spec.symbol",))
            err = _refused(s, "no_such_name+0x8", t.pid)
            assert (err.code, err.fields) == ("NOT_FOUND", ("spec.symbol",))
            err = _refused(s, "libc.so.6!errno", t.pid)
            assert err.code == "FAILED_PRECONDITION"
            assert "thread-local" in err.message
            # Nothing changed: no request, and the process was not even attached.
            assert s.list() == []
            assert tracer_pid(t.pid) == 0
    finally:
        t.kill()


def test_item6_a_stripped_binary_says_what_is_missing(daemon: Daemon, bins: dict[str, str]) -> None:
    t = start(bins, "named-stripped")
    try:
        with daemon.client() as c:
            s = c.open_session("names")
            for location in ("counter", "&cfg.limit"):
                err = _refused(s, location, t.pid)
                assert (err.code, err.fields) == ("FAILED_PRECONDITION", ("spec.symbol",))
                assert "stripped: no symbol table (.symtab)" in err.message
                assert "/usr/lib/debug/.build-id/" in err.message
            err = _refused(s, "named.c:37", t.pid, "exec")
            assert err.code == "FAILED_PRECONDITION"
            assert ".debug_line" in err.message
            assert tracer_pid(t.pid) == 0
    finally:
        t.kill()


def test_item5_and_item6_a_dlopened_library_and_an_ambiguous_name(
    daemon: Daemon, bins: dict[str, str]
) -> None:
    """After dlopen, ``lib_counter`` resolves in the library and its hits say so;
    ``shared_tag`` is in both binaries: INVALID_ARGUMENT listing both."""
    t = start(bins, "named-pie")
    lib = bins["named_lib"]
    try:
        with daemon.client() as c:
            s = c.open_session("names")
            t.send(f"d {lib}\n")
            assert t.readline() == "loaded"
            err = _refused(s, "shared_tag", t.pid)
            assert (err.code, err.fields) == ("INVALID_ARGUMENT", ("spec.symbol",))
            assert "named-pie!shared_tag" in err.message
            assert f"{Path(lib).name}!shared_tag" in err.message
            bp = s.watch(f"{Path(lib).name}!lib_counter", pid=t.pid)
            assert bp.resolution is not None
            assert bp.resolution.module == lib
            t.send("go\n")
            assert t.readline() == "ok"
            hit = _hit(s, 1)
            assert hit.address_symbol == "lib_counter"
            assert hit.ip_symbol.startswith("lib_bump+0x")
            assert hit.ip_line == source_line("lib_counter = value;", "named_lib.c")
    finally:
        t.kill()


@pytest.mark.parametrize("program", PROGRAMS)
def test_item4_a_breakpoint_by_name_survives_exec(
    daemon: Daemon, program: str, bins: dict[str, str]
) -> None:
    """``worker`` by name fires, the program execs itself, and it fires in the new image
    (for the PIE build at its new, re-randomized address); one by address ends."""
    t = start(bins, program)
    try:
        with daemon.client() as c:
            s = c.open_session("names")
            bp = s.watch("worker", pid=t.pid, access="exec")
            by_address = s.watch(t.address, pid=t.pid)
            assert bp.resolution is not None
            first = bp.resolution.address
            command(t, "w")
            assert _hit(s).ip == first
            t.send("x\n")
            new_counter = int(t.readline(), 16)
            assert t.readline() == "ready"
            # The two come in either order: the name may be found again only once the new
            # program is mapped (perf tells of the exec first).
            seen: list[hwbkpt.Event] = []
            expect_event(s, "target_exec", where=lambda e: e.breakpoint_id == bp.id, seen=seen)
            removed = next(
                (e for e in seen if e.kind == "removed" and e.breakpoint_id == by_address.id),
                None,
            ) or expect_event(s, "removed", where=lambda e: e.breakpoint_id == by_address.id)
            assert removed.payload.reason == "target_exec"  # type: ignore[union-attr]
            assert not any(e.kind == "removed" and e.breakpoint_id == bp.id for e in seen)
            (now,) = s.list()
            assert now.id == bp.id
            assert now.resolution is not None
            moved = now.resolution.address
            assert (moved == first) is (program == "named"), (hex(first), hex(moved))
            assert (new_counter == t.address) is (program == "named")
            command(t, "w")
            hit = _hit(s)
            assert hit.ip == moved
            assert hit.ip_symbol == "worker+0x0"
    finally:
        t.kill()


def test_item5_a_name_in_a_library_not_loaded_yet_waits_then_reports(
    daemon: Daemon, bins: dict[str, str]
) -> None:
    """``libnamed_lib.so!lib_counter`` before dlopen: PENDING, reason UNRESOLVED; once the
    library is mapped it is installed under the same id and reports hits in words."""
    t = start(bins, "named-pie")
    lib = bins["named_lib"]
    try:
        with daemon.client() as c:
            s = c.open_session("names")
            bp = s.watch(f"{Path(lib).name}!lib_counter", pid=t.pid)
            assert bp.state is hwbkpt.BreakpointState.PENDING
            assert bp.pending_reason is hwbkpt.PendingReason.UNRESOLVED
            (listed,) = s.list()
            assert (listed.id, listed.pending_reason) == (bp.id, hwbkpt.PendingReason.UNRESOLVED)
            with pytest.raises(hwbkpt.HwbkptError) as err:
                s.modify(bp.id, priority=60)
            assert err.value.code == "FAILED_PRECONDITION"
            t.send(f"d {lib}\n")
            assert t.readline() == "loaded"
            expect_event(
                s,
                "state",
                where=lambda e: (
                    e.breakpoint_id == bp.id and e.payload.state is hwbkpt.BreakpointState.INSTALLED
                ),  # type: ignore[union-attr]
            )
            (now,) = s.list()
            assert now.id == bp.id
            assert now.resolution is not None
            assert now.resolution.module == lib
            t.send("go\n")
            assert t.readline() == "ok"
            hit = _hit(s, 1)
            assert hit.address == now.resolution.address
            assert hit.address_symbol == "lib_counter"
            assert hit.ip_symbol.startswith("lib_bump+0x")
    finally:
        t.kill()


def test_item5_a_waiting_name_can_be_removed(daemon: Daemon, bins: dict[str, str]) -> None:
    t = start(bins, "named")
    try:
        with daemon.client() as c:
            s = c.open_session("names")
            bp = s.watch("libnamed_lib.so!lib_counter", pid=t.pid)
            assert bp.pending_reason is hwbkpt.PendingReason.UNRESOLVED
            s.remove(bp.id)
            removed = expect_event(s, "removed", where=lambda e: e.breakpoint_id == bp.id)
            assert removed.payload.reason == "client"  # type: ignore[union-attr]
            assert s.list() == []
            assert tracer_pid(t.pid) == 0  # waiting attached nothing
    finally:
        t.kill()
