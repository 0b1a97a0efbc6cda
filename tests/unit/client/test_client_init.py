"""The public surface of ``hwbkpt``: exactly the intended names, each importable."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from typing import Any

import pytest

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
    "Progress",
    "Removed",
    "Restored",
    "Scope",
    "Slot",
    "SlotMap",
    "SlotMapUpdate",
    "SessionNews",
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


def _public(cls: type) -> dict[str, Any]:
    return {n: inspect.getattr_static(cls, n) for n in dir(cls) if not n.startswith("_")}


def _as_blocking(annotation: Any) -> Any:
    """An async method's annotation as its blocking twin writes it."""
    if not isinstance(annotation, str):
        return annotation  # none given (self)
    for aio, blocking in (("AsyncIterator", "Iterator"), ("AsyncSession", "Session")):
        annotation = annotation.replace(aio, blocking)
    return annotation


@pytest.mark.parametrize(
    ("blocking", "aio"),
    [(hwbkpt.Client, hwbkpt.AsyncClient), (hwbkpt.Session, hwbkpt.AsyncSession)],
)
def test_sync_and_async_mirror_each_other(blocking: type, aio: type) -> None:
    """The same names, each with the same parameters (names, kinds, defaults, types); every
    blocking method is a coroutine in the mirror, every generator an async generator."""
    ours, theirs = _public(blocking), _public(aio)
    assert ours.keys() == theirs.keys()
    for name, member in ours.items():
        twin = theirs[name]
        assert type(member) is type(twin), name
        if isinstance(member, property):
            assert (member.fset is None) == (twin.fset is None), name
            continue
        if inspect.isgeneratorfunction(member):
            assert inspect.isasyncgenfunction(twin), name
        else:
            assert inspect.iscoroutinefunction(twin), name
        sig, aio_sig = inspect.signature(member), inspect.signature(twin)
        assert [
            p.replace(annotation=_as_blocking(p.annotation)) for p in aio_sig.parameters.values()
        ] == list(sig.parameters.values()), name
        assert _as_blocking(aio_sig.return_annotation) == sig.return_annotation, name


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
