"""Native end-to-end fixtures: the C targets, built once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from native_e2e_support import Target, compile_all

os.environ.pop("HWBKPT_SERVER", None)  # every test names its server explicitly


@pytest.fixture(scope="session")
def bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """name -> path of every tests/e2e_native/c/*.c, compiled with gcc (skips when not root)."""
    return compile_all(tmp_path_factory.mktemp("e2e-native-bin"))


@pytest.fixture
def vars_target(bins: dict[str, str]) -> Iterator[Target]:
    """tests/e2e_native/c/vars.c running, past its "ready"."""
    target = Target([bins["vars"]])
    assert target.readline() == "ready"
    yield target
    target.kill()
