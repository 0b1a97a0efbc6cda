"""hwbkpt.aio without a broker: the asyncio client mirrors the blocking one's failures.
Behaviour against a real broker is in tests/e2e."""

from __future__ import annotations

from pathlib import Path

import pytest

import hwbkpt


async def test_calls_to_a_missing_broker_raise_unavailable(tmp_path: Path) -> None:
    async with hwbkpt.AsyncClient(f"unix:{tmp_path}/none.sock", timeout=5) as c:
        with pytest.raises(hwbkpt.HwbkptError) as info:
            await c.describe()
        assert info.value.code == "UNAVAILABLE"
        with pytest.raises(hwbkpt.HwbkptError):
            await c.open_session("x")


async def test_touch_value_errors_come_before_the_call(tmp_path: Path) -> None:
    async with hwbkpt.AsyncClient(f"unix:{tmp_path}/none.sock") as c:
        with pytest.raises(ValueError, match="does not fit"):
            await c.sim_touch(1, 0x1000, value=-(1 << 20), size=2)


async def test_close_is_idempotent(tmp_path: Path) -> None:
    c = hwbkpt.AsyncClient(f"unix:{tmp_path}/none.sock")
    await c.close()
    await c.close()


def test_bad_address_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="expected unix:PATH"):
        hwbkpt.AsyncClient("nohost")
