"""process_vm_readv through ctypes (on this very process: no privilege needed)."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from hwbkptd.arch.ptrace.memory import RegionReader, read_memory


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
