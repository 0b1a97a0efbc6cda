"""Native tests skip on a laptop and fail in CI (HWBKPT_REQUIRE_NATIVE=1)."""

from __future__ import annotations

import os
import time
from typing import NoReturn

import pytest

__all__ = [
    "MACHINE_REFUSES",
    "kernel_addresses_refused",
    "machine_refuses",
    "native_required",
    "need_kernel_addresses",
    "require_native",
]

#: Prefix of the skip reason for a capability the kernel itself refuses (see ``machine_refuses``).
MACHINE_REFUSES = "the machine refuses: "


def native_required() -> bool:
    return os.environ.get("HWBKPT_REQUIRE_NATIVE") == "1"


def require_native(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail with it when native tests are required."""
    if native_required():
        pytest.fail(f"native test cannot run (HWBKPT_REQUIRE_NATIVE=1): {reason}")
    pytest.skip(reason)


def machine_refuses(reason: str) -> NoReturn:
    """Skip, even in CI, because the kernel refuses what the test needs, whoever asks.

    Only for refusals the broker's own probe saw (``PerfCaps.kernel_addresses_refused``),
    never for a missing tool or privilege, which ``require_native`` turns into a
    failure. The session summary lists each such skip with its reason, and a test
    of the refusal itself (the broker answers FAILED_PRECONDITION naming it) always runs.
    """
    pytest.skip(MACHINE_REFUSES + reason)


def kernel_addresses_refused() -> str:
    """The broker's own probe: why the kernel refuses kernel addresses ("" when it does not).

    The probe needs one free slot on some CPU; a test elsewhere on the machine may hold
    them all for a moment (a task's breakpoints count on every CPU), so ask again.
    """
    from hwbkptd.arch.perf.caps import probe_kernel_addresses

    deadline = time.monotonic() + 10
    while (verdict := probe_kernel_addresses()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if verdict is None:
        require_native("no verdict on kernel addresses: every debug register stayed taken")
    return verdict


def need_kernel_addresses() -> None:
    """Skip (as a machine refusal) when the kernel takes no breakpoint on a kernel address."""
    refused = kernel_addresses_refused()
    if refused:
        machine_refuses(refused)
