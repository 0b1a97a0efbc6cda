"""Progress of long operations under a real broker (issue 14, "Progress and feedback"): an
attach of a process with 2,000 threads, the first name resolution in a binary with 60,000
globals (generated and compiled here), and the quiet of small operations; the CLI's side.
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from c_programs import GCC_FLAGS, nm_address
from elftools.elf.elffile import ELFFile
from native_e2e_support import Daemon, Target, expect_event, native_daemon

import hwbkpt
from hwbkptd.core.progress import INTERVAL, STEPS

pytestmark = [pytest.mark.native, pytest.mark.e2e]

THREADS = 2000
GLOBALS = 60_000
LAST = f"g{GLOBALS - 1}"


@pytest.fixture
def daemon(tmp_path_factory: pytest.TempPathFactory, bins: dict[str, str]) -> Iterator[Daemon]:
    # --notify ptrace: a plain watch attaches its process (the attach that reports).
    d = native_daemon(tmp_path_factory.mktemp("hwbkptd"), "auto", "--notify", "ptrace")
    yield d
    assert d.stop() == 0, d.log()


@pytest.fixture
def crowd(bins: dict[str, str]) -> Iterator[Target]:
    """tests/c/crowd.c with THREADS threads, all running."""
    target = Target([bins["crowd"], str(THREADS)])
    assert target.readline() == f"ready {THREADS}"
    yield target
    target.kill()


@pytest.fixture(scope="module")
def big_exe(tmp_path_factory: pytest.TempPathFactory, bins: dict[str, str]) -> str:
    """A program with GLOBALS global variables (1.4 MiB of symbols, 1.3 MiB of DWARF)."""
    work = tmp_path_factory.mktemp("big")
    src = work / "big.c"
    lines = [f"volatile unsigned long g{i};" for i in range(GLOBALS)]
    lines += [
        "#include <stdio.h>",
        "#include <unistd.h>",
        "int main(void)",
        "{",
        "	char c;",
        f'	printf("%p\\nready\\n", (void *)&{LAST});',
        "	fflush(stdout);",
        f"	while (read(0, &c, 1) == 1)\n		{LAST}++;",
        "	return 0;",
        "}",
    ]
    src.write_text("\n".join(lines) + "\n")
    exe = work / "big"
    subprocess.run(["gcc", *GCC_FLAGS, "-o", str(exe), str(src)], check=True)
    return str(exe)


@pytest.fixture
def big(big_exe: str) -> Iterator[Target]:
    target = Target([big_exe])
    assert target.readline() == "ready"
    yield target
    target.kill()


def _sizes(exe: str) -> dict[str, int]:
    with open(exe, "rb") as f:
        elf = ELFFile(f)
        size = {s.name: int(s["sh_size"]) for s in elf.iter_sections()}
    return {
        "symbols": size[".symtab"] + size.get(".dynsym", 0),
        "debug info": size[".debug_info"],
    }


def _until_state(session: hwbkpt.Session) -> list[hwbkpt.Event]:
    """Every event up to the next state change (the fence after what came before it)."""
    seen: list[hwbkpt.Event] = []
    seen.append(expect_event(session, "state", seen=seen))
    return seen


def _progress(events: list[hwbkpt.Event]) -> list[hwbkpt.Progress]:
    return [e.payload for e in events if isinstance(e.payload, hwbkpt.Progress)]


def _one_operation(reports: list[hwbkpt.Progress], total: int) -> None:
    """A first report, done never decreasing, the last one finished with done == total."""
    assert len(reports) >= 2, reports
    dones = [p.done for p in reports]
    assert dones == sorted(dones)
    assert [p.finished for p in reports] == [False] * (len(reports) - 1) + [True]
    assert (reports[-1].done, reports[-1].total) == (total, total)
    assert all(p.total == total for p in reports), [p.total for p in reports]


def test_progress_attach_of_2000_threads(daemon: Daemon, crowd: Target) -> None:
    with daemon.client() as c:
        s = c.open_session("progress")
        started = time.monotonic()
        tids = s.attach_process(crowd.pid)
        took = time.monotonic() - started
        assert len(tids) == THREADS + 1
        s.watch(crowd.address, pid=crowd.pid)
        events = _until_state(s)
        reports = _progress(events)
        assert {(p.operation, p.pid, p.module, p.detail) for p in reports} == {
            ("attach", crowd.pid, "", "")
        }
        assert {e.breakpoint_id for e in events if e.kind == "progress"} == {0}
        _one_operation(reports, THREADS + 1)
        # Bounded: a first and a last, one per tenth of the work, one per INTERVAL.
        assert len(reports) <= 2 + STEPS + math.ceil(took / INTERVAL), (len(reports), took)
        s.close()
    crowd.send("x")
    assert crowd.finish()[0] == 0


def test_progress_small_attach_and_small_binary_are_quiet(
    daemon: Daemon, vars_target: Target
) -> None:
    with daemon.client() as c:
        s = c.open_session("quiet")
        assert s.attach_process(vars_target.pid) == (vars_target.pid,)
        bp = s.watch("vars[0]", pid=vars_target.pid)  # a name: its small binary is read
        assert bp.resolution is not None
        assert bp.resolution.address == vars_target.address
        assert _progress(_until_state(s)) == []
        s.close()


def test_progress_resolve_in_a_large_binary(daemon: Daemon, big: Target, big_exe: str) -> None:
    sizes = _sizes(big_exe)
    with daemon.client() as c:
        s = c.open_session("names")
        other = c.open_session("other")
        answer: dict[str, hwbkpt.Resolution] = {}
        worker = threading.Thread(
            target=lambda: answer.update(r=s.resolve_location(big.pid, LAST)), daemon=True
        )
        worker.start()
        seen: list[hwbkpt.Event] = []
        expect_event(
            s,
            "progress",
            where=lambda e: getattr(e.payload, "detail", "") == "debug info",
            seen=seen,
            timeout=30,
        )
        # The binary is read off the event loop: another session is answered meanwhile.
        assert other.list() == []
        assert worker.is_alive(), "the resolution ended before the other call was answered"
        worker.join(60)
        r = answer["r"]
        assert (r.address, r.length, r.symbol) == (nm_address(big_exe, LAST), 8, LAST)
        assert r.module == big_exe
        bp = s.watch("g7", pid=big.pid)  # read already: no more progress
        assert bp.resolution is not None
        assert bp.resolution.address == nm_address(big_exe, "g7")
        reports = _progress([*seen, *_until_state(s)])
        assert {(p.operation, p.pid, p.module) for p in reports} == {("resolve", big.pid, big_exe)}
        for detail, total in sizes.items():
            _one_operation([p for p in reports if p.detail == detail], total)
        s.close()
        other.close()


def test_progress_cli_attach_and_watch_by_name(
    daemon: Daemon, crowd: Target, big: Target, big_exe: str
) -> None:
    done = daemon.cli("attach", "--pid", str(crowd.pid), "--timeout", "0.5")
    assert done.returncode == 0, done.stderr
    # stderr is a pipe here: one line once the attach is done, no bar.
    assert f"hwbkpt: attached pid {crowd.pid}: {THREADS + 1} threads" in done.stderr.splitlines()
    assert "\x1b[" not in done.stderr
    assert done.stdout.startswith(f"attached pid {crowd.pid}: threads ")
    assert "progress" not in done.stdout  # text mode: stdout keeps to the events
    done = daemon.cli("--json", "watch", "--pid", str(big.pid), LAST, "--timeout", "0.5")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    # Every event is printed in JSON, the progress too: the numbers have no hole.
    assert [r["seq"] for r in records] == list(range(len(records)))
    kinds = [(r["event"], r.get("detail")) for r in records if r["event"] == "progress"]
    assert ("progress", "symbols") in kinds
    assert ("progress", "debug info") in kinds
    assert records[-1]["event"] == "removed"
    err = done.stderr.splitlines()
    assert f"hwbkpt: read the symbols of {big_exe} ({_mib(_sizes(big_exe)['symbols'])})" in err
    assert any(line.startswith(f"hwbkpt: read the debug info of {big_exe}") for line in err)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"
