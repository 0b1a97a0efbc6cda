"""Validation of what a session asks for, before anything changes (DESIGN section 7).

Every check runs before the broker touches its state, so a call that raises
changes nothing. Each error names the field at fault by its path in the API
request (``spec.priority``, ``filter.equals``).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Container, Mapping
from dataclasses import dataclass

from hwbkptd.core import policy
from hwbkptd.core.arch_port import Arch
from hwbkptd.core.broker_types import BreakpointSpec, Identity
from hwbkptd.core.errors import (
    InvalidArgument,
    NotFound,
)
from hwbkptd.core.filters import validate_filter
from hwbkptd.core.limits import Limits, check_request_count
from hwbkptd.core.machine_hooks import NO_SYMBOLS, MachineHooks, SimHooks
from hwbkptd.core.model import (
    DEFAULT_PRIORITY,
    MAX_PRIORITY,
    Access,
    Action,
    Chunk,
    Filter,
    Request,
    Scope,
)

__all__ = [
    "FIRST_PAGE",
    "NO_SYMBOLS",
    "Prepared",
    "check_action",
    "check_name",
    "check_priority",
    "modified_request",
    "prepare_spec",
    "recheck_spec",
]

_SIM_HOOKS = SimHooks()
_LIMITS = Limits()

#: Process and thread requests below this address are refused: no process maps its
#: first page, and an address of 0 is what a client's failed conversion sends (a hex
#: string that protobuf turned into 0), not a place anyone means to watch.
FIRST_PAGE = 0x1000


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated spec: pid, tid, priority and length filled in, chunks split."""

    spec: BreakpointSpec
    chunks: tuple[Chunk, ...]


def check_name(name: object, max_length: int) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgument("name", "a session needs a name")
    if len(name) > max_length:
        raise InvalidArgument("name", f"at most {max_length} characters, got {len(name)}")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidArgument("name", "must not contain control characters")
    return name


def check_priority(priority: int | None, identity: Identity, field: str) -> int:
    if priority is None:
        return DEFAULT_PRIORITY
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidArgument(field, f"must be an integer 0..{MAX_PRIORITY}")
    if not 0 <= priority <= MAX_PRIORITY:
        raise InvalidArgument(field, f"must be 0..{MAX_PRIORITY}, got {priority}")
    policy.check_priority_cap(identity, priority, field)
    return priority


def check_action(
    action: object, identity: Identity, *, kernel: bool, nonstop: bool, field: str
) -> Action:
    if not isinstance(action, Action):
        raise InvalidArgument(field, "must be notify or halt")
    if action is Action.HALT:
        policy.check_halt(identity, field)
        if kernel:
            raise InvalidArgument(field, "a kernel request cannot halt: kernel code is not stopped")
        if nonstop:
            raise InvalidArgument(field, "a non-stop request never stops its thread")
    return action


def _target(
    spec: BreakpointSpec, threads: Mapping[int, int], processes: Container[int]
) -> tuple[int, int]:
    if spec.scope is Scope.KERNEL:
        if spec.pid:
            raise InvalidArgument("spec.pid", "a kernel request takes no pid")
        if spec.tid:
            raise InvalidArgument("spec.tid", "a kernel request takes no tid")
        return 0, 0
    if spec.scope is Scope.PROCESS:
        if spec.tid:
            raise InvalidArgument("spec.tid", "process scope takes no tid; use thread scope")
        if spec.pid <= 0:
            raise InvalidArgument("spec.pid", "process scope needs a pid")
        if spec.pid not in processes:
            raise NotFound("spec.pid", f"no traced process {spec.pid}")
        return spec.pid, 0
    if spec.tid <= 0:
        raise InvalidArgument("spec.tid", "thread scope needs a tid")
    owner = threads.get(spec.tid)
    if owner is None:
        raise NotFound("spec.tid", f"no traced thread {spec.tid}")
    if spec.pid and spec.pid != owner:
        if spec.pid not in processes:
            raise NotFound("spec.pid", f"no traced process {spec.pid}")
        raise InvalidArgument("spec.pid", f"thread {spec.tid} belongs to process {owner}")
    return owner, spec.tid


def prepare_spec(
    spec: BreakpointSpec,
    *,
    identity: Identity,
    arch: Arch,
    pools: Mapping[str, int],
    threads: Mapping[int, int],
    processes: Container[int],
    owned: int,
    hooks: MachineHooks = _SIM_HOOKS,
    limits: Limits = _LIMITS,
) -> Prepared:
    """Check a spec against the machine, the targets and the caller's rights.

    A ``symbol`` is resolved by ``hooks`` into the address; ``hooks.check`` then
    judges the complete spec (e.g. kernel exec without kprobes) before anything
    changes.
    """
    if not isinstance(spec.scope, Scope):
        raise InvalidArgument("spec.scope", "must be kernel, process or thread")
    if not isinstance(spec.access, Access):
        raise InvalidArgument("spec.access", "must be exec, write, read or rw")
    kernel = spec.scope is Scope.KERNEL
    priority = check_priority(spec.priority, identity, "spec.priority")
    if kernel and spec.nonstop:
        raise InvalidArgument("spec.nonstop", "non-stop mode is for process and thread scope")
    if spec.call_chain and not kernel:
        raise InvalidArgument("spec.call_chain", "call chains are sampled for kernel scope only")
    check_action(spec.action, identity, kernel=kernel, nonstop=spec.nonstop, field="spec.action")
    if kernel:
        policy.check_kernel(identity, "spec.scope")
    policy.check_request_count(identity, owned)
    check_request_count(owned, identity.max_requests, identity.name, limits)
    pid, tid = _target(spec, threads, processes)
    if pid:
        policy.check_target(identity, pid, hooks.process_facts, "spec.tid" if tid else "spec.pid")
    if not isinstance(spec.address, int) or not isinstance(spec.length, int):
        raise InvalidArgument("spec.address", "address and length are integers")
    address, length = spec.address, spec.length
    resolved = None
    if spec.symbol:
        if not isinstance(spec.symbol, str):
            raise InvalidArgument("spec.symbol", "must be a string")
        resolved = hooks.resolve(spec.scope, pid, spec.symbol, spec.access)
        address = resolved.address
        if spec.address and spec.address != address:
            raise InvalidArgument(
                "spec.address",
                f"give an address or a symbol, not both ({spec.symbol!r} is {address:#x})",
            )
        if length == 0 and spec.access is not Access.EXEC:
            # A named region's length is its type's (issue 13): &cfg is all 24 bytes.
            length = resolved.length or 8
    if not kernel and address < FIRST_PAGE:
        field = "spec.symbol" if spec.symbol else "spec.address"
        raise InvalidArgument(
            field,
            f"{address:#x} is below the first page ({FIRST_PAGE:#x}): nothing is mapped there; "
            "was the address lost in conversion?",
        )
    chunks = arch.split(address, length, spec.access, kernel=kernel, pools=pools)
    if spec.access is Access.EXEC and length == 0:
        length = arch.exec_length
    flt = spec.filter if isinstance(spec.filter, Filter) else None
    if flt is None:
        raise InvalidArgument("spec.filter", "not a filter")
    validate_filter(flt, length=length, access=spec.access, field="spec.filter")
    normal = dataclasses.replace(
        spec,
        pid=pid,
        tid=tid,
        priority=priority,
        length=length,
        address=address,
        resolved=resolved,
    )
    hooks.check(normal)
    return Prepared(spec=normal, chunks=chunks)


def recheck_spec(
    spec: BreakpointSpec,
    *,
    identity: Identity,
    threads: Mapping[int, int],
    processes: Container[int],
    owned: int,
    limits: Limits = _LIMITS,
) -> None:
    """Check again, after an ``await``, what the await can change about a prepared ``spec``:
    its target may have gone, and the session may hold more requests now."""
    policy.check_request_count(identity, owned)
    check_request_count(owned, identity.max_requests, identity.name, limits)
    _target(spec, threads, processes)


def modified_request(
    old: Request,
    identity: Identity,
    *,
    priority: int | None,
    action: Action | None,
    filter: Filter | None,
) -> Request:
    """``old`` with what a ModifyBreakpoint changes (``None`` keeps it), checked."""
    new_priority = old.priority
    if priority is not None:
        new_priority = check_priority(priority, identity, "priority")
    new_action = old.action
    if action is not None:
        kernel, nonstop = old.is_kernel, old.nonstop
        new_action = check_action(action, identity, kernel=kernel, nonstop=nonstop, field="action")
    new_filter = old.filter
    if filter is not None:
        if not isinstance(filter, Filter):
            raise InvalidArgument("filter", "not a filter")
        validate_filter(filter, length=old.length, access=old.access, field="filter")
        new_filter = filter
    return dataclasses.replace(old, priority=new_priority, action=new_action, filter=new_filter)
