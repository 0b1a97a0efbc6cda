"""hwbkptd.names.resolver over running test programs (issue 13): PIE load bias, the
image cache by build-id, invalidation, and a library mapped after the first look."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from c_programs import nm_address

from hwbkptd.core.errors import InvalidArgument, NotFound
from hwbkptd.core.model import Access, Scope
from hwbkptd.core.names import HitWords, MissingDebugInfo
from hwbkptd.names.dwarf_info import DwarfInfo
from hwbkptd.names.resolver import Resolver


class Running:
    def __init__(self, exe: str) -> None:
        self.proc = subprocess.Popen(
            [exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        assert self.proc.stdout is not None
        self.counter = int(self.proc.stdout.readline(), 16)
        assert self.proc.stdout.readline().strip() == "ready"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def say(self, line: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        return self.proc.stdout.readline().strip()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def running(c_bins: dict[str, str]) -> Iterator[dict[str, Running]]:
    procs = {name: Running(c_bins[name]) for name in ("named", "named-pie")}
    yield procs
    for p in procs.values():
        p.stop()


def test_item1_pie_and_non_pie_resolve_to_the_running_address(
    running: dict[str, Running], c_bins: dict[str, str]
) -> None:
    r = Resolver()
    for name, p in running.items():
        res = r.resolve(Scope.PROCESS, p.pid, "counter", Access.WRITE)
        assert res.address == p.counter, name
        assert (res.length, res.type_name, res.module) == (8, "long int", c_bins[name])
        link = nm_address(c_bins[name], "counter")
        assert res.load_bias == p.counter - link
        assert (res.load_bias == 0) is (name == "named")


def test_item1_images_are_cached_by_build_id_and_views_forgotten(
    running: dict[str, Running],
) -> None:
    r = Resolver()
    p = running["named-pie"]
    r.resolve(Scope.PROCESS, p.pid, "counter", Access.WRITE)
    loads = r.images.loads
    again = r.resolve(Scope.PROCESS, p.pid, "&cfg", Access.WRITE)
    assert r.images.loads == loads  # nothing read twice
    assert again.length == 24
    assert r.describe_hit(p.pid, p.counter, p.counter, Access.WRITE).address_symbol == "counter"
    r.forget(p.pid)
    assert r.describe_hit(p.pid, p.counter, p.counter, Access.WRITE).address_symbol == "counter"
    assert r.images.loads == loads


def test_item1_file_line_and_function_offsets(running: dict[str, Running]) -> None:
    r = Resolver()
    p = running["named"]
    worker = r.resolve(Scope.PROCESS, p.pid, "worker", Access.EXEC)
    assert worker.length == 0
    assert worker.symbol == "worker"
    line = int(worker.source.split(":")[1])
    by_line = r.resolve(Scope.PROCESS, p.pid, f"named.c:{line}", Access.EXEC)
    assert by_line.address == worker.address
    plus = r.resolve(Scope.PROCESS, p.pid, "worker+0x4", Access.EXEC)
    assert plus.address == worker.address + 4
    words = r.describe_hit(p.pid, worker.address + 4, 0, Access.EXEC)
    assert words.ip_symbol == "worker+0x4"
    with pytest.raises(InvalidArgument) as err:
        r.resolve(Scope.PROCESS, p.pid, f"named.c:{line}", Access.WRITE)
    assert err.value.field == "spec.access"


def test_item5_a_library_mapped_later_is_found(
    running: dict[str, Running], c_bins: dict[str, str]
) -> None:
    r = Resolver()
    p = running["named-pie"]
    with pytest.raises(Exception, match="no symbol 'lib_counter'"):
        r.resolve(Scope.PROCESS, p.pid, "lib_counter", Access.WRITE)
    assert p.say(f"d {c_bins['named_lib']}") == "loaded"
    res = r.resolve(Scope.PROCESS, p.pid, "lib_counter", Access.WRITE)
    assert res.module == c_bins["named_lib"]
    # The hit path reads the mappings again for an address it never saw mapped.
    words = r.describe_hit(p.pid, res.address, res.address, Access.WRITE)
    assert words.address_symbol == "lib_counter"


def test_item6_stripped_says_which_file_and_section(c_bins: dict[str, str]) -> None:
    p = Running(c_bins["named-stripped"])
    try:
        with pytest.raises(MissingDebugInfo) as err:
            Resolver().resolve(Scope.PROCESS, p.pid, "counter", Access.WRITE)
        assert err.value.field == "spec.symbol"
        assert c_bins["named-stripped"] in err.value.message
        assert ".symtab" in err.value.message
    finally:
        p.stop()


def test_item6_a_process_that_is_gone() -> None:
    r = Resolver()
    with pytest.raises(NotFound) as err:
        r.resolve(Scope.PROCESS, 2**22 + 12345, "counter", Access.WRITE)
    assert err.value.field == "spec.pid"
    # The hit path never raises: no words.
    assert r.describe_hit(2**22 + 12345, 0x401000, 0x404000, Access.WRITE) == HitWords()


def test_item6_an_unreadable_binary_is_skipped(tmp_path: Path) -> None:
    """A mapped file that is not ELF (or is damaged) has no names; it breaks nothing."""
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"\x7fELF" + b"\xff" * 60)
    proc = tmp_path / "proc"
    (proc / "77").mkdir(parents=True)
    (proc / "77" / "maps").write_text(f"7f0000000000-7f0000001000 r-xp 00000000 fe:00 1 {junk}\n")
    r = Resolver(proc=proc)
    with pytest.raises(NotFound):
        r.resolve(Scope.PROCESS, 77, "anything", Access.WRITE)
    assert r.describe_hit(77, 0x7F0000000010, 0, Access.EXEC) == HitWords()


def test_item6_prepared_hits_read_nothing_on_the_hit_path(
    running: dict[str, Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``prepare_hits`` (a worker thread, before arming) reads what the first hit's words
    need: the hit path then loads no image and indexes no line table."""
    r = Resolver()
    p = running["named-pie"]
    worker = r.resolve(Scope.PROCESS, p.pid, "worker", Access.EXEC)
    r.forget(p.pid)
    fresh = Resolver()
    told: list[tuple[str, str, int, int]] = []
    fresh.prepare_hits(p.pid, p.counter, lambda *report: told.append(report))
    loads = fresh.images.loads
    assert loads >= 1

    def no_index(self: DwarfInfo) -> None:
        raise AssertionError("the hit path indexed a line table")

    monkeypatch.setattr(DwarfInfo, "_index_lines", no_index)
    words = fresh.describe_hit(p.pid, worker.address + 4, p.counter, Access.WRITE)
    assert words.ip_symbol == "worker+0x4"
    assert words.ip_line.startswith("named.c:")
    assert words.address_symbol == "counter"
    assert fresh.images.loads == loads


def test_item6_prepare_hits_never_raises() -> None:
    Resolver().prepare_hits(2**22 + 12345, 0x404000, lambda *report: None)
