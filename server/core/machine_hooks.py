"""What the broker asks of the machine beyond arming slots: names, up-front checks, targets.

The core stays pure: ``hwbkptd.daemon.machines`` injects an implementation. The
simulated machine uses ``SimHooks`` (no symbols, no attaching: its processes
are created by the sim service); the native machine resolves kernel symbols
through /proc/kallsyms, refuses what its capabilities cannot arm before any
system call, and attaches processes on first use.
"""

from __future__ import annotations

from typing import Protocol

from hwbkptd.core.broker_types import BreakpointSpec
from hwbkptd.core.errors import FailedPrecondition, NotFound
from hwbkptd.core.mechanism import MechanismInfo
from hwbkptd.core.model import Access, Scope
from hwbkptd.core.names import Names, Resolved
from hwbkptd.core.policy import ProcessFacts

__all__ = ["NO_SYMBOLS", "MachineHooks", "SimHooks"]

NO_SYMBOLS = "symbol resolution is not available on this machine"


class MachineHooks(Protocol):
    @property
    def attaches(self) -> bool:
        """True when a request on a process the broker does not trace yet attaches it."""
        ...

    @property
    def names(self) -> Names | None:
        """User-space names and hit words (issue 13); None where the machine has none."""
        ...

    def resolve(self, scope: Scope, pid: int, symbol: str, access: Access) -> Resolved:
        """What the location ``symbol`` names. Errors name ``spec.symbol``."""
        ...

    def check(self, spec: BreakpointSpec) -> None:
        """Refuse, before any change, a validated spec this machine cannot arm."""
        ...

    def process_of(self, tid: int) -> int:
        """The process a thread belongs to; NotFound ``spec.tid`` when there is none."""
        ...

    def process_facts(self, pid: int) -> ProcessFacts:
        """Its uids and executable, for the policy's target check; NotFound ``pid``."""
        ...

    def mechanisms(self) -> tuple[MechanismInfo, ...]:
        """One entry per mechanism for ``describe``; () to describe the mechanism itself."""
        ...

    def notes(self) -> tuple[str, ...]:
        """Notes for ``describe``; () to use the mechanism's own."""
        ...


class SimHooks:
    """The simulated machine: every process already exists in the broker; no symbols."""

    attaches = False
    names: Names | None = None

    def resolve(self, scope: Scope, pid: int, symbol: str, access: Access) -> Resolved:
        raise FailedPrecondition(NO_SYMBOLS)

    def check(self, spec: BreakpointSpec) -> None:
        return None

    def process_of(self, tid: int) -> int:
        raise NotFound("spec.tid", f"no traced thread {tid}")

    def process_facts(self, pid: int) -> ProcessFacts:
        # Simulated processes belong to no one: they count as root's, so only an identity
        # allowed any process (or their pid) may touch them.
        return ProcessFacts(pid=pid, uids=(0,), exe="")

    def mechanisms(self) -> tuple[MechanismInfo, ...]:
        return ()

    def notes(self) -> tuple[str, ...]:
        return ()
