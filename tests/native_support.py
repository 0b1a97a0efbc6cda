"""Native tests skip on a laptop and fail in CI (HWBKPT_REQUIRE_NATIVE=1)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["native_required", "require_native"]


def native_required() -> bool:
    return os.environ.get("HWBKPT_REQUIRE_NATIVE") == "1"


def require_native(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail with it when native tests are required."""
    if native_required():
        pytest.fail(f"native test cannot run (HWBKPT_REQUIRE_NATIVE=1): {reason}")
    pytest.skip(reason)
