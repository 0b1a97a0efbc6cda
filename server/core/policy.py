"""Who may do what: the policy file's rules and every check that reads them (DESIGN section 7).

The policy is TOML. Each ``[identities.NAME]`` table gives one identity (a client
certificate's SAN or CN, or a bearer token's name from the token file) its rights;
``[unauthenticated]`` lists the methods a caller without credentials may use besides
health (none by default). The names ``local`` (the Unix socket) and ``loopback``
(plain TCP on loopback) are the listeners' own identities: without an entry the
local socket stays fully trusted, as without a policy file, and plain loopback
callers must bring a token.

The checks here are the only place rights are read; the rest of the core calls them.
The identity of the call being served is ambient (``CALLER``): the server's
interceptor sets it for each call, and background work (leases, timers) runs with
none, which is the broker acting on its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from hwbkptd.core.broker_types import Identity, SlotMapView, ThreadSlotsView
from hwbkptd.core.errors import NotFound, PermissionDenied, ResourceExhausted
from hwbkptd.core.events import Displaced, EventKind
from hwbkptd.core.model import MAX_PRIORITY

__all__ = [
    "CALLER",
    "HIDDEN_SESSION",
    "LOCAL",
    "LOOPBACK",
    "Policy",
    "PolicyError",
    "ProcessFacts",
    "calling",
    "check_halt",
    "check_kernel",
    "check_launch",
    "check_priority_cap",
    "check_request_count",
    "check_session_count",
    "check_session_owner",
    "check_sim",
    "check_target",
    "describe_rights",
    "displaced_for",
    "parse_policy",
    "shows_name",
    "slot_map_for",
    "still_allowed",
]

LOCAL = "local"
LOOPBACK = "loopback"
#: What an identity that may not see other sessions' names reads in their place.
HIDDEN_SESSION = "(other)"

#: The identity of the call being served; None for the broker's own work.
CALLER: ContextVar[Identity | None] = ContextVar("hwbkpt_caller", default=None)


@contextlib.contextmanager
def calling(identity: Identity) -> Iterator[None]:
    """Serve what runs inside as ``identity``."""
    reset = CALLER.set(identity)
    try:
        yield
    finally:
        CALLER.reset(reset)


# --- the checks ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProcessFacts:
    """What a target check needs to know of a process (the machine hooks read it)."""

    pid: int
    #: Real, effective and saved uid: a process is allowed only if all of them are.
    uids: tuple[int, ...]
    #: Its executable's path; "" when unknown.
    exe: str


def check_target(
    identity: Identity, pid: int, facts_of: Callable[[int], ProcessFacts], field: str
) -> None:
    """Refuse a process ``identity`` may not touch (``facts_of`` reads it only if needed)."""
    if identity.any_target or pid in identity.target_pids:
        return
    facts = facts_of(pid)
    if identity.target_uids and set(facts.uids) <= identity.target_uids:
        return
    if facts.exe and any(fnmatch.fnmatchcase(facts.exe, glob) for glob in identity.target_exes):
        return
    uids = "/".join(str(u) for u in dict.fromkeys(facts.uids))
    raise PermissionDenied(
        f"identity {identity.name!r} may not touch process {facts.pid} "
        f"(uid {uids}, {facts.exe or 'executable unknown'})",
        field=field,
    )


def check_priority_cap(identity: Identity, priority: int, field: str) -> None:
    if priority > identity.max_priority:
        raise PermissionDenied(
            f"identity {identity.name!r} may use priorities up to {identity.max_priority}, "
            f"not {priority}",
            field=field,
        )


def check_halt(identity: Identity, field: str) -> None:
    if not identity.may_halt:
        raise PermissionDenied(f"identity {identity.name!r} may not halt threads", field=field)


def check_kernel(identity: Identity, field: str) -> None:
    if not identity.may_kernel:
        raise PermissionDenied(
            f"identity {identity.name!r} may not watch kernel addresses", field=field
        )


def check_request_count(identity: Identity, owned: int) -> None:
    if owned >= identity.max_requests:
        raise ResourceExhausted(
            f"identity {identity.name!r} may hold at most {identity.max_requests} requests "
            "per session"
        )


def check_launch(identity: Identity) -> None:
    if not identity.may_launch:
        raise PermissionDenied(f"identity {identity.name!r} may not launch programs")


def check_sim(identity: Identity) -> None:
    if not identity.may_sim:
        raise PermissionDenied(f"identity {identity.name!r} may not drive the simulated machine")


def check_session_count(identity: Identity, open_sessions: int) -> None:
    """Refuse one more session beyond the identity's ``max_sessions``."""
    cap = identity.max_sessions
    if cap is not None and open_sessions >= cap:
        raise ResourceExhausted(f"identity {identity.name!r} may have at most {cap} sessions open")


def check_session_owner(owner: Identity) -> None:
    """A session is the identity's that opened it: to any other caller it does not exist.

    The answer is the unknown token's, word for word, so a foreign caller learns nothing,
    not even that the secret was right."""
    caller = CALLER.get()
    if caller is not None and caller.name != owner.name:
        raise NotFound("token", "no such session")


def still_allowed(identity: Identity, kernel: bool, priority: int, halts: bool) -> bool:
    """Whether a request held from before a policy reload passes the new rules."""
    if kernel and not identity.may_kernel:
        return False
    if halts and not identity.may_halt:
        return False
    return priority <= identity.max_priority


def shows_name(viewer: Identity | None, owner: str | None) -> bool:
    """Whether ``viewer`` may read the name of a session ``owner`` holds (None: a session
    no longer known, whose owner cannot be told, so hidden). ``None`` as viewer is the
    broker's own look, which sees everything."""
    return viewer is None or viewer.sees_session_names or owner == viewer.name


def displaced_for(
    viewer: Identity | None, kind: EventKind, owner_of: Callable[[int], str | None]
) -> EventKind:
    """``kind`` as ``viewer`` may read it: in a Displaced event, the displacing session's
    name is hidden unless it may see it (``owner_of`` names the identity holding a request).
    Who displaced it at what priority (its request id and priority) always shows."""
    if not isinstance(kind, Displaced) or not kind.by_breakpoint_id:
        return kind  # no other session in it (0: a holder outside the broker)
    if shows_name(viewer, owner_of(kind.by_breakpoint_id)):
        return kind
    return dataclasses.replace(kind, by_session=HIDDEN_SESSION)


def slot_map_for(
    identity: Identity | None, view: SlotMapView, owner_of: Callable[[int], str]
) -> SlotMapView:
    """``view`` as ``identity`` may see it: other identities' session names hidden unless
    it may see them (its own sessions' names always show). ``owner_of`` names the identity
    holding a request; ``None`` (the broker's own look) sees everything."""
    if identity is None or identity.sees_session_names:
        return view
    own = identity.name

    def name(rid: int, session_name: str) -> str:
        return session_name if owner_of(rid) == own else HIDDEN_SESSION

    def slots(t: ThreadSlotsView) -> ThreadSlotsView:
        shown = tuple(
            dataclasses.replace(s, holders=tuple((r, name(r, n), p) for r, n, p in s.holders))
            for s in t.slots
        )
        return dataclasses.replace(t, slots=shown)

    waiting = tuple(
        dataclasses.replace(w, session_name=name(w.id, w.session_name)) for w in view.waiting
    )
    return SlotMapView(threads=tuple(slots(t) for t in view.threads), waiting=waiting)


def describe_rights(identity: Identity) -> str:
    """One line saying what ``identity`` may do (``hwbkptd --check-policy``)."""
    if identity.any_target:
        targets = "any process"
    else:
        parts = [f"uids {sorted(identity.target_uids)}"] if identity.target_uids else []
        parts += [f"pids {sorted(identity.target_pids)}"] if identity.target_pids else []
        parts += [f"exe {list(identity.target_exes)}"] if identity.target_exes else []
        targets = ", ".join(parts) or "no process"
    yes = {True: "yes", False: "no"}
    return (
        f"targets {targets}; kernel {yes[identity.may_kernel]}; "
        f"priority <= {identity.max_priority}; halt {yes[identity.may_halt]}; "
        f"launch {yes[identity.may_launch]}; requests/session {identity.max_requests}; "
        f"sessions {identity.max_sessions if identity.max_sessions is not None else 'any'}; "
        f"sees session names {yes[identity.sees_session_names]}; sim {yes[identity.may_sim]}"
    )


# --- the policy file -----------------------------------------------------------------------
class PolicyError(Exception):
    """The policy file is not valid; the message names the key and what is wrong."""


@dataclass(frozen=True, slots=True)
class Policy:
    identities: Mapping[str, Identity]
    #: Full method names (``/package.Service/Method``) open to callers without credentials.
    unauthenticated_methods: frozenset[str] = frozenset()

    def identity(self, name: str, via: str) -> Identity | None:
        """The rights of ``name``; None when the policy does not know it. The local socket
        is fully trusted unless the policy names ``local``."""
        found = self.identities.get(name)
        if found is None:
            return Identity(name=LOCAL, via=via) if name == LOCAL else None
        return dataclasses.replace(found, via=via)


_IDENTITY_KEYS = {
    "any_process": bool,
    "uids": list,
    "pids": list,
    "exe": list,
    "kernel": bool,
    "max_priority": int,
    "halt": bool,
    "launch": bool,
    "max_requests": int,
    "max_sessions": int,
    "see_session_names": bool,
    "sim": bool,
}

#: Without a key, an identity gets the least: no process, no kernel, no halting, no
#: launching, the debugger priority, a few sessions, other sessions' names hidden.
_DEFAULTS = Identity(
    name="",
    may_kernel=False,
    max_priority=50,
    may_halt=False,
    max_requests=64,
    may_launch=False,
    max_sessions=4,
    any_target=False,
    sees_session_names=False,
    may_sim=True,
)


def _ints(where: str, values: Sequence[Any], low: int) -> frozenset[int]:
    out: set[int] = set()
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise PolicyError(f"{where}: {v!r} is not a whole number of at least {low}")
        out.add(v)
    return frozenset(out)


def _identity(name: str, table: Mapping[str, Any]) -> Identity:
    where = f"identities.{name}"
    for key, value in table.items():
        kind = _IDENTITY_KEYS.get(key)
        if kind is None:
            known = ", ".join(sorted(_IDENTITY_KEYS))
            raise PolicyError(f"{where}: unknown key {key!r} (known: {known})")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise PolicyError(f"{where}.{key}: must be a {kind.__name__}, got {value!r}")
    d = _DEFAULTS
    priority = table.get("max_priority", d.max_priority)
    if not 0 <= priority <= MAX_PRIORITY:
        raise PolicyError(f"{where}.max_priority: must be 0..{MAX_PRIORITY}, got {priority}")
    for key in ("max_requests", "max_sessions"):
        if key in table and table[key] < 1:
            raise PolicyError(f"{where}.{key}: must be at least 1, got {table[key]}")
    exes = table.get("exe", [])
    for glob in exes:
        if not isinstance(glob, str) or not glob.startswith("/"):
            raise PolicyError(f"{where}.exe: {glob!r} is not an absolute path or glob")
    return Identity(
        name=name,
        may_kernel=table.get("kernel", d.may_kernel),
        max_priority=priority,
        may_halt=table.get("halt", d.may_halt),
        max_requests=table.get("max_requests", d.max_requests),
        may_launch=table.get("launch", d.may_launch),
        max_sessions=table.get("max_sessions", d.max_sessions),
        any_target=table.get("any_process", d.any_target),
        target_uids=_ints(f"{where}.uids", table.get("uids", []), 0),
        target_pids=_ints(f"{where}.pids", table.get("pids", []), 1),
        target_exes=tuple(exes),
        sees_session_names=table.get("see_session_names", d.sees_session_names),
        may_sim=table.get("sim", d.may_sim),
    )


def parse_policy(text: str) -> Policy:
    """Read a policy file's text; PolicyError names the first thing wrong."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PolicyError(f"not valid TOML: {err}") from None
    for key in doc:
        if key not in ("identities", "unauthenticated"):
            raise PolicyError(f"unknown table {key!r} (known: identities, unauthenticated)")
    tables = doc.get("identities", {})
    if not isinstance(tables, dict):
        raise PolicyError("identities: must be a table of [identities.NAME] tables")
    identities: dict[str, Identity] = {}
    for name, table in tables.items():
        if not name or not isinstance(table, dict):
            raise PolicyError(f"identities.{name}: must be a table")
        identities[name] = _identity(name, table)
    open_to_all = doc.get("unauthenticated", {})
    if not isinstance(open_to_all, dict) or set(open_to_all) - {"methods"}:
        raise PolicyError("unauthenticated: only the key 'methods' is known")
    methods = open_to_all.get("methods", [])
    if not isinstance(methods, list):
        raise PolicyError("unauthenticated.methods: must be a list of method names")
    for method in methods:
        if not isinstance(method, str) or not method.startswith("/") or method.count("/") != 2:
            raise PolicyError(
                f"unauthenticated.methods: {method!r} is not a full method name "
                "such as '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo'"
            )
    return Policy(identities=identities, unauthenticated_methods=frozenset(methods))
