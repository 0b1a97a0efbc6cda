"""hwbkptd.core.machine_hooks: the simulated machine's hooks keep the broker as it was."""

from __future__ import annotations

import pytest

from hwbkptd.core.broker_types import BreakpointSpec
from hwbkptd.core.errors import FailedPrecondition, NotFound
from hwbkptd.core.machine_hooks import NO_SYMBOLS, MachineHooks, SimHooks
from hwbkptd.core.model import Access, Scope


def test_sim_hooks() -> None:
    hooks: MachineHooks = SimHooks()
    assert not hooks.attaches
    with pytest.raises(FailedPrecondition, match=NO_SYMBOLS):
        hooks.resolve(Scope.KERNEL, 0, "init_stack", Access.WRITE)
    hooks.check(BreakpointSpec(Scope.KERNEL, 0xFFFF_FFFF_8100_0000, 1, Access.EXEC))
    with pytest.raises(NotFound) as err:
        hooks.process_of(1)
    assert err.value.field == "spec.tid"
    assert hooks.mechanisms() == ()
    assert hooks.notes() == ()
