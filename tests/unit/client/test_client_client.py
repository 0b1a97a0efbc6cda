"""hwbkpt.client without a broker: addresses, argument errors before any call, and failures
wrapped as HwbkptError. Behaviour against a real broker is in tests/e2e."""

from __future__ import annotations

from pathlib import Path

import pytest

import hwbkpt
from hwbkpt._address import ENV_VAR


def test_address_defaults_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_VAR, f"unix:{tmp_path}/env.sock")
    with hwbkpt.Client() as c:
        assert c.address == f"unix:{tmp_path}/env.sock"


def test_bad_address_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="port"):
        hwbkpt.Client("tcp:localhost:http")


def test_calls_to_a_missing_broker_raise_unavailable(tmp_path: Path) -> None:
    with hwbkpt.Client(f"unix:{tmp_path}/none.sock", timeout=5) as c:
        for call in (c.describe, lambda: c.open_session("x"), lambda: c.sim_spawn(1)):
            with pytest.raises(hwbkpt.HwbkptError) as info:
                call()
            assert info.value.code == "UNAVAILABLE"


def test_touch_value_errors_come_before_the_call(tmp_path: Path) -> None:
    with hwbkpt.Client(f"unix:{tmp_path}/none.sock") as c:
        with pytest.raises(ValueError, match="does not fit"):
            c.sim_touch(1, 0x1000, value=1 << 40, size=4)
        with pytest.raises(ValueError, match="access"):
            c.sim_touch(1, 0x1000, access="jump")


def test_close_is_idempotent(tmp_path: Path) -> None:
    c = hwbkpt.Client(f"unix:{tmp_path}/none.sock")
    c.close()
    c.close()
