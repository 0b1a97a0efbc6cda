"""The public surface of ``hwbkpt``: exactly the intended names, each importable."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import hwbkpt

INTENDED = {
    # clients and sessions
    "Client",
    "Session",
    "AsyncClient",
    "AsyncSession",
    # errors
    "HwbkptError",
    "SessionLostError",
    "FieldViolation",
    # models
    "Access",
    "Action",
    "Breakpoint",
    "BreakpointSpec",
    "BreakpointState",
    "Chunk",
    "Displaced",
    "Event",
    "EventKind",
    "EventPayload",
    "Filter",
    "Frame",
    "HaltTimeout",
    "Hit",
    "HitsDropped",
    "Holder",
    "MachineInfo",
    "Mechanism",
    "PendingReason",
    "Pool",
    "Removed",
    "Restored",
    "Scope",
    "Slot",
    "SlotMap",
    "SpawnedProcess",
    "StateChanged",
    "TargetExec",
    "TargetExited",
    "ThreadSlots",
    "TouchResult",
    # constants and helpers
    "DEFAULT_ADDRESS",
    "PRIORITY_PRESETS",
    "default_address",
    "__version__",
}


def test_all_lists_exactly_the_intended_names() -> None:
    assert set(hwbkpt.__all__) == INTENDED
    assert len(hwbkpt.__all__) == len(set(hwbkpt.__all__))


def test_every_exported_name_exists() -> None:
    for name in hwbkpt.__all__:
        assert getattr(hwbkpt, name, None) is not None, name


def test_sync_and_async_mirror_each_other() -> None:
    def public(cls: type) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_")}

    assert public(hwbkpt.Client) - {"address", "timeout"} == public(hwbkpt.AsyncClient) - {
        "address",
        "timeout",
    }
    assert public(hwbkpt.Session) == public(hwbkpt.AsyncSession)


def test_every_module_declares_all_and_it_is_true() -> None:
    for info in pkgutil.walk_packages(hwbkpt.__path__, "hwbkpt."):
        if info.name.startswith("hwbkpt.v1"):
            continue  # generated
        module = importlib.import_module(info.name)
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"{info.name} has no __all__"
        for name in exported:
            assert hasattr(module, name), f"{info.name}.__all__ names missing {name}"


def test_client_does_not_import_the_server_or_ptrace() -> None:
    # A fresh interpreter: other tests in this run may have imported the server already.
    code = (
        "import pkgutil, importlib, sys, hwbkpt\n"
        "for i in pkgutil.walk_packages(hwbkpt.__path__, 'hwbkpt.'):\n"
        "    importlib.import_module(i.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('hwbkptd', 'ptrace'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
