"""Validation of breakpoint specs and session names, before anything changes."""

from __future__ import annotations

import pytest

from hwbkptd.arch.layouts import parse_layout
from hwbkptd.core.broker_types import BreakpointSpec, Identity
from hwbkptd.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from hwbkptd.core.model import Access, Action, Filter, Request, Scope
from hwbkptd.core.names import Resolved
from hwbkptd.core.specs import NO_SYMBOLS, check_name, modified_request, prepare_spec

LAYOUT = parse_layout("sim")
THREADS = {100: 100, 101: 100, 200: 200}
PROCS = {100, 200}


def prepare(spec: BreakpointSpec, identity: Identity = Identity(), owned: int = 0):  # noqa: B008
    return prepare_spec(
        spec,
        identity=identity,
        arch=LAYOUT.arch,
        pools=LAYOUT.pools,
        threads=THREADS,
        processes=PROCS,
        owned=owned,
    )


def test_defaults_are_filled_in() -> None:
    p = prepare(BreakpointSpec(Scope.THREAD, 0x1000, 0, Access.EXEC, tid=101))
    assert (p.spec.pid, p.spec.tid, p.spec.priority, p.spec.length) == (100, 101, 25, 1)
    assert len(p.chunks) == 1
    p = prepare(BreakpointSpec(Scope.PROCESS, 0x1001, 7, Access.READ, pid=200, priority=0))
    assert p.spec.priority == 0
    assert [(c.address, c.length) for c in p.chunks] == [(0x1001, 1), (0x1002, 2), (0x1004, 4)]


@pytest.mark.parametrize(
    ("spec", "error", "field"),
    [
        (BreakpointSpec(None, 0x1000, 8, Access.WRITE, pid=100), InvalidArgument, "spec.scope"),  # type: ignore[arg-type]
        (BreakpointSpec(Scope.PROCESS, 0x1000, 8, None, pid=100), InvalidArgument, "spec.access"),  # type: ignore[arg-type]
        (
            BreakpointSpec(Scope.PROCESS, 0x1000, 8, Access.WRITE, pid=100, priority=101),
            InvalidArgument,
            "spec.priority",
        ),
        (
            BreakpointSpec(Scope.PROCESS, 0x1000, 8, Access.WRITE, pid=100, action="x"),
            InvalidArgument,
            "spec.action",
        ),  # type: ignore[arg-type]
        (
            BreakpointSpec(Scope.PROCESS, 0x1000, 8, Access.WRITE, pid=100, tid=101),
            InvalidArgument,
            "spec.tid",
        ),
        (BreakpointSpec(Scope.PROCESS, 0x1000, 8, Access.WRITE), InvalidArgument, "spec.pid"),
        (BreakpointSpec(Scope.PROCESS, 0x1000, 8, Access.WRITE, pid=7), NotFound, "spec.pid"),
        (BreakpointSpec(Scope.THREAD, 0x1000, 8, Access.WRITE, tid=7), NotFound, "spec.tid"),
        (
            BreakpointSpec(Scope.THREAD, 0x1000, 8, Access.WRITE, pid=200, tid=101),
            InvalidArgument,
            "spec.pid",
        ),
        (
            BreakpointSpec(Scope.THREAD, 0x1000, 8, Access.WRITE, pid=7, tid=101),
            NotFound,
            "spec.pid",
        ),
        (
            BreakpointSpec(Scope.KERNEL, 0xFFFF_FFFF_8100_0000, 8, Access.WRITE, pid=100),
            InvalidArgument,
            "spec.pid",
        ),
        (
            BreakpointSpec(Scope.KERNEL, 0xFFFF_FFFF_8100_0000, 8, Access.WRITE, nonstop=True),
            InvalidArgument,
            "spec.nonstop",
        ),
        (
            BreakpointSpec(Scope.PROCESS, 0x1000, 8, Access.WRITE, pid=100, call_chain=True),
            InvalidArgument,
            "spec.call_chain",
        ),
        (
            BreakpointSpec(
                Scope.PROCESS, 0x1000, 8, Access.WRITE, pid=100, nonstop=True, action=Action.HALT
            ),
            InvalidArgument,
            "spec.action",
        ),
        (
            BreakpointSpec(
                Scope.PROCESS, 0x1000, 8, Access.WRITE, pid=100, filter=Filter(equals=b"1")
            ),
            InvalidArgument,
            "spec.filter.equals",
        ),
        (
            BreakpointSpec(Scope.PROCESS, 0x1000, 64, Access.WRITE, pid=100),
            InvalidArgument,
            "spec.length",
        ),
    ],
)
def test_bad_specs_name_the_field(spec: BreakpointSpec, error: type, field: str) -> None:
    with pytest.raises(error) as err:
        prepare(spec)
    assert err.value.field == field


def test_rights_of_the_identity() -> None:
    guest = Identity("guest", may_kernel=False, max_priority=30, may_halt=False, max_requests=2)
    ok = BreakpointSpec(Scope.PROCESS, 0x1000, 8, Access.WRITE, pid=100)
    prepare(ok, guest, owned=1)
    with pytest.raises(ResourceExhausted):
        prepare(ok, guest, owned=2)
    with pytest.raises(PermissionDenied, match="up to 30"):
        prepare(BreakpointSpec(Scope.PROCESS, 0x1000, 8, Access.WRITE, pid=100, priority=31), guest)
    with pytest.raises(PermissionDenied, match="halt"):
        prepare(
            BreakpointSpec(Scope.PROCESS, 0x1000, 8, Access.WRITE, pid=100, action=Action.HALT),
            guest,
        )
    with pytest.raises(PermissionDenied, match="kernel"):
        prepare(BreakpointSpec(Scope.KERNEL, 0xFFFF_FFFF_8100_0000, 8, Access.WRITE), guest)


def test_symbols_are_not_resolved_yet() -> None:
    with pytest.raises(FailedPrecondition, match=NO_SYMBOLS):
        prepare(BreakpointSpec(Scope.PROCESS, 0, 8, Access.WRITE, pid=100, symbol="main"))


@pytest.mark.parametrize("name", ["", "x" * 129, "tab\there", 5])
def test_bad_names(name: object) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_name(name, 128)
    assert err.value.field == "name"


def test_good_names() -> None:
    assert check_name("IDE — ünïcode", 128) == "IDE — ünïcode"
    assert check_name("x" * 128, 128) == "x" * 128


class _Resolving:
    """Hooks that know one kernel symbol and refuse kernel exec, as the native machine does."""

    attaches = False
    names = None

    def resolve(self, scope: Scope, pid: int, symbol: str, access: Access) -> Resolved:
        if symbol != "init_stack":
            raise NotFound("spec.symbol", symbol)
        return Resolved(symbol, 0xFFFF_FFFF_8200_0000, 0)

    def check(self, spec: BreakpointSpec) -> None:
        if spec.access is Access.EXEC and spec.scope is Scope.KERNEL:
            raise FailedPrecondition("kprobes")

    def process_of(self, tid: int) -> int:
        raise NotFound("spec.tid", "none")

    def mechanisms(self) -> tuple[()]:
        return ()

    def notes(self) -> tuple[()]:
        return ()


def test_symbols_resolve_through_the_hooks() -> None:
    hooks = _Resolving()
    spec = BreakpointSpec(Scope.KERNEL, 0, 8, Access.WRITE, symbol="init_stack")
    p = prepare_spec(
        spec,
        identity=Identity(),
        arch=LAYOUT.arch,
        pools=LAYOUT.pools,
        threads=THREADS,
        processes=PROCS,
        owned=0,
        hooks=hooks,
    )
    assert (p.spec.address, p.spec.symbol) == (0xFFFF_FFFF_8200_0000, "init_stack")
    assert [c.address for c in p.chunks] == [0xFFFF_FFFF_8200_0000]
    exec_spec = BreakpointSpec(Scope.KERNEL, 0xFFFF_FFFF_8100_0000, 0, Access.EXEC)
    with pytest.raises(FailedPrecondition, match="kprobes"):
        prepare_spec(
            exec_spec,
            identity=Identity(),
            arch=LAYOUT.arch,
            pools=LAYOUT.pools,
            threads=THREADS,
            processes=PROCS,
            owned=0,
            hooks=hooks,
        )


def test_modified_request() -> None:
    p = prepare(BreakpointSpec(Scope.PROCESS, 0x1000, 8, Access.WRITE, pid=100))
    old = Request(
        id=1,
        seq=1,
        session_id="s",
        session_name="a",
        scope=Scope.PROCESS,
        pid=100,
        tid=0,
        address=0x1000,
        length=8,
        access=Access.WRITE,
        priority=25,
        chunks=p.chunks,
    )
    new = modified_request(old, Identity(), priority=75, action=Action.HALT, filter=None)
    assert (new.priority, new.action, new.filter) == (75, Action.HALT, old.filter)
    assert modified_request(old, Identity(), priority=None, action=None, filter=None) == old
    with pytest.raises(InvalidArgument) as err:
        modified_request(old, Identity(), priority=101, action=None, filter=None)
    assert err.value.field == "priority"
    with pytest.raises(InvalidArgument) as err:
        modified_request(old, Identity(), priority=None, action=None, filter=Filter(equals=b"x"))
    assert err.value.field.startswith("filter")
