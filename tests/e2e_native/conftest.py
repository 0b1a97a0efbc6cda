"""Native end-to-end fixtures: the test C programs (tests/c) where they can run."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from native_e2e_support import Target, native_reason
from native_support import require_native

os.environ.pop("HWBKPT_SERVER", None)  # every test names its server explicitly


@pytest.fixture(scope="session")
def bins(c_bins: dict[str, str]) -> dict[str, str]:
    """The test C programs (tests/c), where a native broker can trace them."""
    reason = native_reason()
    if reason:
        require_native(reason)
    return c_bins


@pytest.fixture
def vars_target(bins: dict[str, str]) -> Iterator[Target]:
    """tests/c/vars.c running, past its "ready"."""
    target = Target([bins["vars"]])
    assert target.readline() == "ready"
    yield target
    target.kill()
