"""Starting a program under the tracer, held before its first instruction, and the
tracer's launch, release and kill commands (``LaunchCommands``).

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
import contextlib
import ctypes
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from ptrace.ctypes_libc import LIBC_FILENAME

from hwbkptd.arch.ptrace import binding as pt
from hwbkptd.arch.ptrace.state import HOLD_LAUNCH, Proc
from hwbkptd.arch.ptrace.tracer import TracerCore
from hwbkptd.core.errors import FailedPrecondition, InvalidArgument, NotFound

__all__ = ["LaunchCommands", "exec_error", "resolve", "spawn_stopped", "trace_options"]

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


class LaunchCommands(TracerCore):
    """launch, release and kill_launched; their bodies run on the tracer thread."""

    def launch(
        self, path: str, argv: Sequence[str], env: Mapping[str, str], cwd: str, follow_fork: bool
    ) -> Future[int]:
        return self.submit(lambda f: self._launch(f, path, argv, env, cwd, follow_fork))

    def release(self, pid: int) -> Future[None]:
        return self.submit(lambda f: self._release(f, pid))

    def kill_launched(self, pid: int) -> Future[None]:
        return self.submit(lambda f: self._kill_launched(f, pid))

    def _launch(
        self,
        future: Future[Any],
        path: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        follow_fork: bool,
    ) -> None:
        pid, errpipe = spawn_stopped(path, argv, env, cwd)
        try:
            pt.seize(pid, trace_options(follow_fork) | pt.PTRACE_O_EXITKILL)
        except OSError as err:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(errpipe)
            raise FailedPrecondition(f"PTRACE_SEIZE of the launched child failed: {err}") from None
        proc = Proc(pid, follow_fork)
        proc.launched = True
        proc.quiet = True
        proc.launch_future = future
        proc.errpipe = errpipe
        self.procs[pid] = proc
        self.add(proc, pid)
        os.kill(pid, signal.SIGCONT)

    def _release(self, future: Future[Any], pid: int) -> None:
        proc = self.procs.get(pid)
        if proc is None or proc.quiet:
            raise NotFound("pid", f"process {pid} is not traced")
        if not proc.launched:
            raise FailedPrecondition(f"process {pid} was attached, not launched: it already runs")
        t = self.threads.get(pid)
        if t is not None:
            if t.holds & HOLD_LAUNCH:
                # Released, it is a process like any other: the broker's end lets it go.
                with contextlib.suppress(OSError):  # dying: its death is reported next
                    pt.setoptions(pid, trace_options(proc.follow_fork))
            t.holds &= ~HOLD_LAUNCH
            self.settle(t)
        self.resolve(future, None)

    def _kill_launched(self, future: Future[Any], pid: int) -> None:
        proc = self.procs.get(pid)
        if proc is None or proc.quiet or not proc.launched:
            raise NotFound("pid", f"no process {pid} launched by the broker")
        if not self.unreleased(proc):
            raise FailedPrecondition(f"process {pid} was released: it runs")
        self.kill(proc, future)

    def unreleased(self, proc: Proc) -> bool:
        """Launched and not let run yet (before its exec, or held at it)."""
        if not proc.launched:
            return False
        t = self.threads.get(proc.pid)
        return proc.launch_future is not None or (t is not None and bool(t.holds & HOLD_LAUNCH))

    def kill(self, proc: Proc, future: Future[Any] | None) -> None:
        """SIGKILL a launch given up; ``future`` is answered once it has been reaped (its
        exit is collected like any traced thread's, and ``process_ended`` answers it)."""
        if future is not None:
            proc.detach_futures.append(future)
        for tid in proc.tids:
            t = self.threads.get(tid)
            if t is not None:
                t.holds = 0  # an exit stop, if one is reported, must not be held
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
