"""Starting a program under the tracer, held before its first instruction (the
commands launch, release and kill_launched are in commands.py).

The tracer thread forks; the child restores the signal state a program
expects (the broker blocks SIGCHLD and Python ignores SIGPIPE and SIGXFSZ,
and both would survive execve), stops itself with SIGSTOP, and execs once the
tracer has seized it and sent SIGCONT. The exec stop (PTRACE_EVENT_EXEC) is
where the program is held: its address space is the new program's and it has
run no instruction of it. If execve fails, the child writes the errno to a
close-on-exec pipe and exits 127.

A launch that fails leaves no process behind: until it is released, the program
is traced with PTRACE_O_EXITKILL (the kernel kills it if the broker dies), and a
launch given up (``kill_launched``: its session ended first) or still held when
the tracer closes is killed and reaped, not let run.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import shutil
import signal
from collections.abc import Mapping, Sequence

from ptrace.ctypes_libc import LIBC_FILENAME

from hwbkptd.arch.ptrace import binding as pt
from hwbkptd.core.errors import InvalidArgument, NotFound

__all__ = ["exec_error", "resolve", "spawn_stopped", "trace_options"]

Future = concurrent.futures.Future

_libc = ctypes.CDLL(LIBC_FILENAME, use_errno=True)
_libc.signal.restype = ctypes.c_void_p
_libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
_SIG_DFL = 0
_CHILD_FAILED = 127


def resolve(argv: Sequence[str], env: Mapping[str, str], cwd: str) -> str:
    """The executable's path, checked before anything is forked."""
    if not argv or not argv[0]:
        raise InvalidArgument("argv", "the program to launch is missing")
    if not os.path.isdir(cwd):
        raise NotFound("cwd", f"working directory {cwd!r} does not exist")
    program = argv[0]
    if "/" in program:
        path = program if os.path.isabs(program) else os.path.join(cwd, program)
    else:
        found = shutil.which(program, path=env.get("PATH", os.defpath))
        if found is None:
            raise NotFound("argv", f"{program!r} is not found in PATH")
        path = found
    if not os.path.isfile(path):
        raise NotFound("argv", f"{path!r} does not exist")
    if not os.access(path, os.X_OK):
        raise InvalidArgument("argv", f"{path!r} is not executable")
    return path


def _child(path: str, argv: Sequence[str], env: Mapping[str, str], cwd: str, errfd: int) -> None:
    """Runs in the forked child: only async-signal-safe-ish calls, no locks, no logging."""
    try:
        os.chdir(cwd)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            _libc.signal(sig, _SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.kill(os.getpid(), signal.SIGSTOP)
        os.execve(path, list(argv), dict(env))
    except OSError as err:
        os.write(errfd, str(err.errno or 0).encode())


def spawn_stopped(
    path: str, argv: Sequence[str], env: Mapping[str, str], cwd: str
) -> tuple[int, int]:
    """Fork a child stopped before its execve; returns (pid, read end of the error pipe)."""
    rfd, wfd = os.pipe()  # both close-on-exec (PEP 446)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rfd)
            _child(path, argv, env, cwd, wfd)
        finally:
            os._exit(_CHILD_FAILED)
    os.close(wfd)
    # Our own child, not traced yet: this returns as soon as it stops itself (or fails).
    _, status = os.waitpid(pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        return pid, rfd
    err = exec_error(rfd)
    raise NotFound("argv", f"cannot start {argv[0]!r}: {err or 'the child exited before exec'}")


def exec_error(rfd: int) -> str:
    """What the child wrote before dying (empty when execve succeeded); closes the pipe."""
    try:
        data = os.read(rfd, 64)
    except OSError:
        data = b""
    finally:
        os.close(rfd)
    if not data:
        return ""
    try:
        return os.strerror(int(data))
    except ValueError:
        return data.decode(errors="replace")


def trace_options(follow_fork: bool) -> int:
    options = pt.PTRACE_O_TRACECLONE | pt.PTRACE_O_TRACEEXEC | pt.PTRACE_O_TRACEEXIT
    if follow_fork:
        options |= pt.PTRACE_O_TRACEFORK | pt.PTRACE_O_TRACEVFORK
    return options
