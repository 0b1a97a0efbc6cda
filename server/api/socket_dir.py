"""The Unix socket's directory, checked and created level by level, and the ready file.

grpcio cannot see a Unix peer's uid, so the socket's directory is the local gate: if
someone else can write to it (or to a level above it without the sticky bit), they can
put their own socket or a symbolic link where clients look, or move the broker's away.
So every level from ``/`` down is opened without following symbolic links
(``O_NOFOLLOW``, each relative to the one above, so nothing can be swapped between the
check and the use) and must belong to root or to the daemon's user and be writable by no
one else; a level above may be writable by others only with the sticky bit (``/tmp``). A
symbolic link above the socket's own directory is followed only where it sits in a level
no one else can write (``/var/run -> /run``). Missing levels are created 0750 for the
operators' group.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

__all__ = ["UnsafePath", "secure_directory", "write_ready_file"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 8


class UnsafePath(Exception):
    """The socket's location is not safe; the message says which level and why."""


def _owners() -> set[int]:
    return {0, os.geteuid()}


def _check_level(path: str, st: os.stat_result, *, own_dir: bool) -> None:
    if st.st_uid not in _owners():
        raise UnsafePath(f"{path} belongs to uid {st.st_uid}, not root or this daemon's user")
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if not writable:
        return
    who = "others" if st.st_mode & stat.S_IWOTH else "its group"
    if own_dir:
        raise UnsafePath(
            f"{path} is writable by {who} (mode {stat.S_IMODE(st.st_mode):o}): "
            "they could replace the socket; use a directory only its owner can write"
        )
    if not st.st_mode & stat.S_ISVTX:
        raise UnsafePath(
            f"{path} is writable by {who} without the sticky bit "
            f"(mode {stat.S_IMODE(st.st_mode):o}): they could replace what lies below it"
        )


@contextlib.contextmanager
def _opened(name: str, dir_fd: int | None) -> Iterator[int]:
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def secure_directory(path: str, mode: int, gid: int, _links: int = 0) -> None:
    """Check every level of the absolute ``path`` and create what is missing (``mode``,
    root and ``gid`` when run as root); UnsafePath says what is wrong."""
    parts = [p for p in path.split("/") if p]
    fd = os.open("/", _DIR_FLAGS)
    try:
        _check_level("/", os.fstat(fd), own_dir=not parts)
        here = ""
        for i, name in enumerate(parts):
            own_dir = i == len(parts) - 1
            here = f"{here}/{name}"
            try:
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                nfd = _make(name, fd, here, mode, gid)
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePath(f"{here}: {err.strerror}") from None
                st = os.lstat(name, dir_fd=fd)
                if not stat.S_ISLNK(st.st_mode):
                    raise UnsafePath(f"{here} is not a directory") from None
                if own_dir:
                    raise UnsafePath(
                        f"{here} is a symbolic link: the socket's own directory must be real"
                    ) from None
                if _links >= _MAX_LINKS:
                    raise UnsafePath(f"{here}: too many symbolic links") from None
                # The level holding the link was checked: no one else can change the link.
                target = os.path.join(os.path.dirname(here), os.readlink(name, dir_fd=fd))
                rest = "/".join(parts[i + 1 :])
                return secure_directory(
                    os.path.normpath(os.path.join(target, rest)), mode, gid, _links + 1
                )
            os.close(fd)
            fd = nfd
            _check_level(here, os.fstat(fd), own_dir=own_dir)
    finally:
        os.close(fd)
    return None


def _make(name: str, parent_fd: int, path: str, mode: int, gid: int) -> int:
    try:
        os.mkdir(name, mode, dir_fd=parent_fd)
    except FileExistsError:
        pass  # made meanwhile by someone: it is checked like any existing level
    except OSError as err:
        raise UnsafePath(f"cannot create {path}: {err.strerror}") from None
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    st = os.fstat(fd)
    if st.st_uid == os.geteuid():
        os.fchmod(fd, mode)  # mkdir's mode is masked by the umask
        if os.geteuid() == 0:
            os.fchown(fd, 0, gid)
    return fd


def write_ready_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` whole and without following a symbolic link: a new file
    is made exclusively (``O_EXCL | O_NOFOLLOW``) beside it and renamed over it (a rename
    replaces a link at ``path``, never writes through it)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)
