"""The trap-rate measurement script runs and counts right (its numbers are printed, not judged)."""

from __future__ import annotations

import pytest
import trap_rate

pytestmark = pytest.mark.native


def test_trap_rate_measures_every_hit(
    native_bins: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    summary = trap_rate.main(["--rounds", "1", "--writes", "2000"])
    assert summary["all_hits"] is True
    assert summary["writes"] == 2000
    for key in ("c_ref_hits_per_s", "mechanism_hits_per_s", "ratio", "tracer_cpu_us_per_hit"):
        value = summary[key]
        assert isinstance(value, float)
        assert value > 0
    with capsys.disabled():
        print(f"\n[trap rate, 2,000 writes] {summary}")
