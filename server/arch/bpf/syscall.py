"""The bpf(2) system call through ctypes: maps, program loads, links.

Attribute layouts follow ``union bpf_attr`` (include/uapi/linux/bpf.h); each
command's struct is packed into a zeroed 128-byte buffer (the kernel checks
that bytes past what it knows are zero). A refused program raises
``VerifierError`` carrying the verifier's log.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import struct

__all__ = [
    "ATTACH_PERF_EVENT",
    "F_MMAPABLE",
    "MAP_ARRAY",
    "MAP_HASH",
    "MAP_RINGBUF",
    "PROG_PERF_EVENT",
    "BpfError",
    "VerifierError",
    "link_create_perf_event",
    "map_create",
    "map_delete",
    "map_lookup",
    "map_update",
    "prog_load",
    "set_bpf_ioctl",
]

_SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine(), -1)

_MAP_CREATE, _MAP_LOOKUP_ELEM, _MAP_UPDATE_ELEM, _MAP_DELETE_ELEM = 0, 1, 2, 3
_PROG_LOAD = 5
_LINK_CREATE = 28

MAP_HASH = 1
MAP_ARRAY = 2
#: map_create flag: an array map whose values user space may mmap.
F_MMAPABLE = 1 << 10
MAP_RINGBUF = 27
PROG_PERF_EVENT = 7
#: enum bpf_attach_type: BPF_PERF_EVENT (a program on a perf event through a link).
ATTACH_PERF_EVENT = 41
_ANY = 0
#: PERF_EVENT_IOC_SET_BPF = _IOW('$', 8, __u32).
_IOC_SET_BPF = 0x40042408

_ATTR_SIZE = 128
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    """A bpf() command failed; ``errno`` says why."""


class VerifierError(BpfError):
    """The verifier refused a program; ``log`` is what it said."""

    def __init__(self, err: int, log: str) -> None:
        tail = log.strip().splitlines()[-12:]
        super().__init__(err, f"{os.strerror(err)}; verifier log:\n" + "\n".join(tail))
        self.log = log


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    if _SYS_BPF < 0:
        raise BpfError(errno.ENOSYS, f"bpf() is not wired for {platform.machine()}")
    ret = _libc.syscall(ctypes.c_long(_SYS_BPF), ctypes.c_int(cmd), attr, ctypes.c_uint(_ATTR_SIZE))
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, os.strerror(err))
    return int(ret)


def _attr(fmt: str, *values: object) -> ctypes.Array[ctypes.c_char]:
    buf = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into(fmt, buf, 0, *values)
    return buf


def _name(name: str) -> bytes:
    return name.encode()[:15]


def map_create(
    map_type: int, key_size: int, value_size: int, max_entries: int, name: str, flags: int = 0
) -> int:
    """A new map's descriptor (map_type, key_size, value_size, max_entries, flags,
    inner_map_fd, numa_node, map_name[16])."""
    attr = _attr(
        "<IIIIIII16s", map_type, key_size, value_size, max_entries, flags, 0, 0, _name(name)
    )
    return _bpf(_MAP_CREATE, attr)


def map_update(fd: int, key: bytes, value: bytes) -> None:
    """Set ``key`` to ``value`` (BPF_ANY: create or replace)."""
    keybuf = ctypes.create_string_buffer(key, len(key))
    valbuf = ctypes.create_string_buffer(value, len(value))
    attr = _attr("<IIQQQ", fd, 0, ctypes.addressof(keybuf), ctypes.addressof(valbuf), _ANY)
    _bpf(_MAP_UPDATE_ELEM, attr)


def map_delete(fd: int, key: bytes) -> bool:
    """Remove ``key``; False when the map had no such key."""
    keybuf = ctypes.create_string_buffer(key, len(key))
    try:
        _bpf(_MAP_DELETE_ELEM, _attr("<IIQ", fd, 0, ctypes.addressof(keybuf)))
    except BpfError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    """The value at ``key``, None when the map has none."""
    out = ctypes.create_string_buffer(value_size)
    keybuf = ctypes.create_string_buffer(key, len(key))
    attr = _attr("<IIQQQ", fd, 0, ctypes.addressof(keybuf), ctypes.addressof(out), 0)
    try:
        _bpf(_MAP_LOOKUP_ELEM, attr)
    except BpfError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return out.raw


def prog_load(prog_type: int, code: bytes, name: str, log_size: int = 1 << 20) -> int:
    """Load a program; ``VerifierError`` with the log when it is refused.

    Layout: prog_type, insn_cnt, insns, license, log_level, log_size, log_buf,
    kern_version, prog_flags, prog_name[16].
    """
    if len(code) % 8:
        raise ValueError("a BPF program is a whole number of 8-byte instructions")
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"GPL")
    fmt = "<IIQQIIQII16s"
    try:
        return _bpf(
            _PROG_LOAD,
            _attr(fmt, prog_type, len(code) // 8, ctypes.addressof(insns),
                  ctypes.addressof(license_), 0, 0, 0, 0, 0, _name(name)),
        )  # fmt: skip
    except BpfError as exc:
        if exc.errno not in (errno.EACCES, errno.EINVAL):
            raise
        first = exc.errno
    # Refused: load again with a log to say why.
    log = ctypes.create_string_buffer(log_size)
    try:
        return _bpf(
            _PROG_LOAD,
            _attr(fmt, prog_type, len(code) // 8, ctypes.addressof(insns),
                  ctypes.addressof(license_), 1, log_size, ctypes.addressof(log), 0, 0,
                  _name(name)),
        )  # fmt: skip
    except BpfError as exc:
        raise VerifierError(exc.errno or first, log.value.decode(errors="replace")) from None


def link_create_perf_event(prog_fd: int, event_fd: int, cookie: int) -> int:
    """Attach a program to a perf event through a BPF link carrying ``cookie``
    (``bpf_get_attach_cookie`` returns it); the link's descriptor keeps it attached.

    Layout: prog_fd, target_fd, attach_type, flags, then perf_event.bpf_cookie (u64).
    """
    attr = _attr("<IIIIQ", prog_fd, event_fd, ATTACH_PERF_EVENT, 0, cookie)
    return _bpf(_LINK_CREATE, attr)


def set_bpf_ioctl(event_fd: int, prog_fd: int) -> None:
    """The older attachment (no cookie): PERF_EVENT_IOC_SET_BPF."""
    fcntl.ioctl(event_fd, _IOC_SET_BPF, prog_fd)
