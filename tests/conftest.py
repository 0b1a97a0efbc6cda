"""Shared test settings and the test C programs. Keeps tests/ on sys.path so tests can import
native_support and c_programs."""

from __future__ import annotations

import os
import signal

import pytest
from c_programs import build_all
from hypothesis import HealthCheck, settings
from native_support import MACHINE_REFUSES

# The ptrace mechanism learns of tracee stops through a signalfd for SIGCHLD, which only works
# when SIGCHLD is blocked in every thread of the process (hwbkptd builds its machine before any
# thread starts). Threads that earlier tests leave behind (gRPC's, client streams') would
# otherwise take the signal and the tracer would miss the stop. Block it here, before any
# thread exists, as the daemon does.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
# The ptrace mechanism's launch forks from its tracer thread; gRPC's fork handlers would abort
# a process that has gRPC loaded (hwbkptd sets the same before importing gRPC).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def c_bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every test C program (tests/c/*.c), compiled once per session: name -> path."""
    return build_all(tmp_path_factory.mktemp("c-bin"))


# With HWBKPT_REQUIRE_NATIVE=1 (CI) a skipped test is a failure, whatever skipped it, except
# a refusal by the kernel itself (native_support.machine_refuses), which is listed instead.
_skipped: list[str] = []
_refused: list[str] = []


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.skipped:
        return
    reason = _skip_reason(report)
    if MACHINE_REFUSES in reason:
        _refused.append(f"{report.nodeid}: {reason.split(MACHINE_REFUSES, 1)[1]}")
    elif os.environ.get("HWBKPT_REQUIRE_NATIVE") == "1":
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if _refused and reporter is not None:
        reporter.write_line(
            f"{len(_refused)} test(s) could not run because this machine's kernel refuses:",
            yellow=True,
        )
        for line in _refused:
            reporter.write_line(f"  {line}", yellow=True)
    if _skipped:
        if reporter is not None:
            reporter.write_line(
                f"HWBKPT_REQUIRE_NATIVE=1: {len(_skipped)} skipped test(s) count as failures:",
                red=True,
            )
            for nodeid in _skipped:
                reporter.write_line(f"  {nodeid}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
