"""The broker's domain words (DESIGN section 1) as plain, immutable values.

Everything here is pure data shared by the core, the arch encoders and the
mechanisms; nothing here knows about gRPC, ptrace or perf.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CPU_CONTEXT",
    "PRIORITY_PRESETS",
    "Access",
    "Action",
    "Chunk",
    "Filter",
    "PendingReason",
    "Request",
    "RequestState",
    "Scope",
    "rank_key",
]

#: The pseudo thread id of the CPU context: the table that holds kernel requests on every CPU.
CPU_CONTEXT = 0

PRIORITY_PRESETS: dict[str, int] = {"low": 10, "normal": 25, "debugger": 50, "high": 75}
DEFAULT_PRIORITY = PRIORITY_PRESETS["normal"]
MAX_PRIORITY = 100


class Scope(enum.Enum):
    KERNEL = "kernel"
    PROCESS = "process"
    THREAD = "thread"


class Access(enum.Enum):
    EXEC = "exec"
    WRITE = "write"
    READ = "read"
    READ_WRITE = "rw"


class Action(enum.Enum):
    NOTIFY = "notify"
    HALT = "halt"


class RequestState(enum.Enum):
    INSTALLED = "installed"
    PARTIAL = "partial"
    PENDING = "pending"
    REMOVED = "removed"


class PendingReason(enum.Enum):
    NONE = "none"
    PRIORITY = "priority"
    EXTERNAL = "external"
    NO_THREADS = "no_threads"
    #: The location names a module not loaded yet (issue 13): no address to place.
    UNRESOLVED = "unresolved"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One slot-sized, aligned piece of a request; equal chunks share one slot."""

    pool: str
    address: int
    length: int
    access: Access

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.pool, self.address, self.length, self.access.value)


@dataclass(frozen=True, slots=True)
class Filter:
    changed_only: bool = False
    equals: bytes | None = None
    ignore_first: int = 0
    stop_after: int = 0


@dataclass(frozen=True, slots=True)
class Request:
    """A registered request as the arbiter sees it.

    ``seq`` is the creation order and never changes, even when the request is
    modified, so "older before newer" is stable. ``pid`` is the process for
    process scope and the owning process for thread scope (0 for kernel).
    """

    id: int
    seq: int
    session_id: str
    session_name: str
    scope: Scope
    pid: int
    tid: int
    address: int
    length: int
    access: Access
    priority: int
    chunks: tuple[Chunk, ...]
    action: Action = Action.NOTIFY
    filter: Filter = Filter()
    nonstop: bool = False
    #: Kernel requests: sample the kernel call chain with each hit.
    call_chain: bool = False

    @property
    def is_kernel(self) -> bool:
        return self.scope is Scope.KERNEL


def rank_key(req: Request) -> tuple[int, int, int]:
    """Sort key for rank order: priority high to low, kernel before user, older before newer."""
    return (-req.priority, 0 if req.is_kernel else 1, req.seq)
