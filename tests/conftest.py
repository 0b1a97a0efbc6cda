"""Shared test settings. Keeps tests/ on sys.path so tests can import native_support."""

from __future__ import annotations

import os
import signal

import pytest
from hypothesis import HealthCheck, settings

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


# With HWBKPT_REQUIRE_NATIVE=1 (CI) a skipped test is a failure, whatever skipped it.
_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and os.environ.get("HWBKPT_REQUIRE_NATIVE") == "1":
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"HWBKPT_REQUIRE_NATIVE=1: {len(_skipped)} skipped test(s) count as failures:",
                red=True,
            )
            for nodeid in _skipped:
                reporter.write_line(f"  {nodeid}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
