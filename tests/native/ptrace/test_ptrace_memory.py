"""Reading values: process_vm_readv on this very process (no privilege needed), and
``read_stopped`` (PTRACE_PEEKDATA or process_vm_readv) on a child stopped under ptrace."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
from collections.abc import Iterator

import pytest

from hwbkptd.arch.ptrace import binding as pt
from hwbkptd.arch.ptrace.memory import RegionReader, read_memory

PAGE = os.sysconf("SC_PAGESIZE")


def test_reads_several_regions_in_one_call() -> None:
    a = ctypes.create_string_buffer(b"abcdefgh")
    b = ctypes.c_uint32(0xDEADBEEF)
    reader = RegionReader([(ctypes.addressof(a), 8), (ctypes.addressof(b), 4)])
    assert reader.read(os.getpid()) == (b"abcdefgh", (0xDEADBEEF).to_bytes(4, "little"))
    a.value = b"ABCDEFGH"
    assert reader.read(os.getpid())[0] == b"ABCDEFGH"
    assert RegionReader([]).read(os.getpid()) == ()


def test_unreadable_regions_come_back_empty() -> None:
    a = ctypes.c_uint64(7)
    hole = 0x1000  # the first pages are never mapped (vm.mmap_min_addr)
    reader = RegionReader([(ctypes.addressof(a), 8), (hole, 8)])
    assert reader.read(os.getpid()) == ((7).to_bytes(8, "little"), b"")


def test_read_memory_errors() -> None:
    value = ctypes.c_uint64(42)
    assert read_memory(os.getpid(), ctypes.addressof(value), 8) == (42).to_bytes(8, "little")
    assert read_memory(os.getpid(), 0x1000, 0) == b""
    with pytest.raises(OSError, match="Bad address") as err:
        read_memory(os.getpid(), 0x1000, 8)
    assert err.value.errno == errno.EFAULT
    with pytest.raises(OSError, match="No such process") as err:
        read_memory(2**22 + 12345, 0x1000, 8)
    assert err.value.errno == errno.ESRCH


@pytest.fixture
def stopped_pages(native_bins: dict[str, str]) -> Iterator[tuple[int, int]]:
    """A child stopped under our ptrace (pid, address of its two known pages)."""
    proc = subprocess.Popen([native_bins["pages"]], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        area = int(proc.stdout.readline(), 16)
        pt.seize(proc.pid, 0)
        pt.interrupt(proc.pid)
        _, status = os.waitpid(proc.pid, pt.WALL)
        assert os.WIFSTOPPED(status)
        yield proc.pid, area
    finally:
        proc.kill()
        proc.wait()


def _pattern(offset: int, length: int) -> bytes:
    """What pages.c wrote at ``offset``."""
    return bytes(0xFF if 64 <= i < 72 else (i * 7) & 0xFF for i in range(offset, offset + length))


@pytest.mark.native
@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (8, 8),  # one word: PTRACE_PEEKDATA
        (13, 3),  # a few bytes inside a word
        (PAGE - 4, 4),  # the last bytes of a page: the word read ends with them
        (2 * PAGE - 2, 2),  # the last bytes before the unmapped page
        (PAGE - 3, 6),  # across two mapped pages
        (100, 32),  # more than a word: process_vm_readv
        (64, 8),  # all ones, PEEKDATA's error value: process_vm_readv tells
        (62, 4),  # some of those ones
    ],
)
def test_read_stopped_reads_what_is_there(
    stopped_pages: tuple[int, int], offset: int, length: int
) -> None:
    pid, area = stopped_pages
    reader = RegionReader([(area + offset, length)])
    assert reader.read_stopped(pid, pid) == (_pattern(offset, length),)
    assert reader.read(pid) == (_pattern(offset, length),)


@pytest.mark.native
def test_read_stopped_of_unmapped_or_several_regions(stopped_pages: tuple[int, int]) -> None:
    pid, area = stopped_pages
    assert RegionReader([(area + 2 * PAGE, 8)]).read_stopped(pid, pid) == (b"",)
    reader = RegionReader([(area, 4), (area + 2 * PAGE - 4, 8)])
    assert reader.read_stopped(pid, pid) == (_pattern(0, 4), b"")
