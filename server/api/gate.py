"""The one place every call is authenticated (DESIGN section 7).

``Authenticate`` is the server's first interceptor. It wraps each method handler (the
broker's, the sim's, reflection's; health stays open) so that the call is identified
before anything else runs, refused UNAUTHENTICATED or PERMISSION_DENIED when it must be,
and otherwise served inside ``policy.calling(identity)``; streaming handlers stay
streaming. Calls that change state, and every refusal here, leave one ``audit`` log line
with identity, peer, method and outcome.

Who a caller is:

- on the Unix socket: ``local``, fully trusted unless the policy names ``local`` (the
  socket's file permissions are the gate; grpc cannot see a Unix peer's uid);
- a bearer token (``authorization: Bearer ...``) names its identity from the token file;
- else a verified client certificate (first SAN, else CN);
- else, on plain loopback TCP without a policy file, ``loopback``, trusted as before;
- else nobody: only health and the policy's ``[unauthenticated] methods`` answer.

An identity the policy does not list is refused PERMISSION_DENIED on everything but health.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import structlog

from hwbkptd.api.credentials import TokenBook, bearer_token, certificate_name
from hwbkptd.api.wrap_handler import Handler, WrappingInterceptor, behaviour_of, rebuilt
from hwbkptd.core import policy
from hwbkptd.core.broker_types import Identity
from hwbkptd.core.errors import BrokerError, PermissionDenied
from hwbkptd.core.policy import LOCAL, LOOPBACK, Policy

__all__ = [
    "AUDITED_METHODS",
    "CALL_PEER",
    "OPEN_PREFIXES",
    "AccessRules",
    "Authenticate",
    "Gate",
    "Unauthenticated",
    "caller_fields",
]

#: Methods anyone may call, with or without credentials: health checks.
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
_SIM_PREFIX = "/hwbkpt.v1.SimService/"

#: Methods whose every call is an audited state change (the sim's change the machine).
AUDITED_METHODS = frozenset(
    f"/hwbkpt.v1.BrokerService/{m}"
    for m in (
        "OpenSession",
        "ResumeSession",
        "CloseSession",
        "SetBreakpoint",
        "ModifyBreakpoint",
        "RemoveBreakpoint",
        "ResumeThreads",
        "ResumeThreadsStream",
        "AttachProcess",
        "LaunchProcess",
        "ReleaseProcess",
        "DetachProcess",
    )
) | frozenset(
    f"{_SIM_PREFIX}{m}" for m in ("SpawnProcess", "SpawnThread", "EndThread", "EndProcess")
)

_audit = structlog.get_logger("hwbkptd.audit")

#: The peer of the call being served, beside ``policy.CALLER``.
CALL_PEER: ContextVar[str] = ContextVar("hwbkpt_peer", default="")

#: An unauthenticated caller let through by the allowlist: no rights beyond the call.
_ANONYMOUS = Identity(
    name="",
    may_kernel=False,
    max_priority=0,
    may_halt=False,
    max_requests=0,
    may_launch=False,
    max_sessions=0,
    any_target=False,
    sees_session_names=False,
    may_sim=False,
    via="none",
)

_Metadata = Iterable[tuple[str, Any]] | None


class Unauthenticated(Exception):
    """The call carries no valid credentials."""


@dataclass(frozen=True, slots=True)
class AccessRules:
    """What the gate judges by; a SIGHUP swaps in a new one whole."""

    policy: Policy | None = None
    tokens: TokenBook = field(default_factory=TokenBook)


class Gate:
    """Identifies callers by the current rules."""

    def __init__(self, rules: AccessRules) -> None:
        self.rules = rules

    def identify(
        self, method: str, peer: str, auth: Mapping[str, Iterable[bytes]], metadata: _Metadata
    ) -> Identity:
        """The caller's identity with its rights; raises Unauthenticated or
        PermissionDenied."""
        rules = self.rules
        found = self._who(peer, auth, metadata, rules)
        if found is None:
            allowed = rules.policy is not None and method in rules.policy.unauthenticated_methods
            if not allowed:
                raise Unauthenticated(
                    "no credentials: present a bearer token (authorization metadata) "
                    "or a client certificate"
                )
            return _ANONYMOUS
        if isinstance(found, Identity):
            identity = found
        else:
            name, via = found
            known = rules.policy.identity(name, via) if rules.policy is not None else None
            if known is None:
                raise PermissionDenied(f"identity {name!r} is not in the broker's policy")
            identity = known
        if method.startswith(_SIM_PREFIX):
            policy.check_sim(identity)
        return identity

    @staticmethod
    def _who(
        peer: str, auth: Mapping[str, Iterable[bytes]], metadata: _Metadata, rules: AccessRules
    ) -> Identity | tuple[str, str] | None:
        if peer.startswith("unix:"):
            if rules.policy is None:
                return Identity(name=LOCAL, via=LOCAL)
            return (LOCAL, LOCAL)
        token = bearer_token(metadata)
        if token is not None:
            name = rules.tokens.name_of(token) if token else None
            if name is None:
                raise Unauthenticated("the bearer token is not known to this broker")
            return (name, "token")
        cert = certificate_name(auth)
        if cert:
            return (cert, "certificate")
        if b"ssl" not in list(auth.get("transport_security_type") or ()):
            # Plain TCP: only on loopback, and only with the operator's explicit flag.
            if rules.policy is None:
                return Identity(name=LOOPBACK, via=LOOPBACK)
            return (LOOPBACK, LOOPBACK) if LOOPBACK in rules.policy.identities else None
        return None


@contextlib.contextmanager
def _peer_of_call(peer: str) -> Iterator[None]:
    reset = CALL_PEER.set(peer)
    try:
        yield
    finally:
        CALL_PEER.reset(reset)


def caller_fields() -> dict[str, str]:
    """Who the call being served is, for its log lines (``status.log_refusal``)."""
    identity = policy.CALLER.get()
    if identity is None:
        return {}
    return {"identity": identity.name, "via": identity.via, "peer": CALL_PEER.get()}


def _log(identity: Identity | None, peer: str, method: str, outcome: str, why: str = "") -> None:
    fields: dict[str, Any] = {
        "identity": identity.name if identity is not None else "",
        "via": identity.via if identity is not None else "none",
        "peer": peer,
        "method": method,
        "outcome": outcome,
    }
    if why:
        fields["reason"] = why
    _audit.info("audit", **fields)


class Authenticate(WrappingInterceptor):
    """The server interceptor: every non-open method is wrapped by ``gate``."""

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self._gate = gate

    def applies(self, method: str) -> bool:
        return not method.startswith(OPEN_PREFIXES)

    def wrap(self, handler: Handler, method: str) -> Handler:
        return _wrap(handler, method, self._gate)


@dataclass(frozen=True, slots=True)
class _Admission:
    peer: str
    identity: Identity | None = None
    #: Why not, when ``identity`` is None.
    code: grpc.StatusCode = grpc.StatusCode.OK
    why: str = ""


def _admit(gate: Gate, method: str, context: Any) -> _Admission:
    peer = context.peer() or ""
    try:
        identity = gate.identify(
            method, peer, context.auth_context(), context.invocation_metadata()
        )
    except Unauthenticated as err:
        refused = _Admission(peer, None, grpc.StatusCode.UNAUTHENTICATED, str(err))
    except BrokerError as err:
        refused = _Admission(peer, None, grpc.StatusCode.PERMISSION_DENIED, err.message)
    else:
        return _Admission(peer, identity)
    _log(None, peer, method, refused.code.name, refused.why)
    return refused


def _wrap(handler: Handler, method: str, gate: Gate) -> Handler:
    behaviour = behaviour_of(handler)
    if behaviour is None:
        return handler
    audited = method in AUDITED_METHODS
    wrapped: Callable[..., Any]
    if inspect.isasyncgenfunction(behaviour):
        wrapped = _async_stream(behaviour, method, gate, audited)
    elif inspect.iscoroutinefunction(behaviour):
        wrapped = _async_unary(behaviour, method, gate, audited)
    elif handler.response_streaming:
        wrapped = _sync_stream(behaviour, method, gate)
    else:
        wrapped = _sync_unary(behaviour, method, gate)
    return rebuilt(handler, wrapped)


def _async_unary(
    behaviour: Callable[..., Any], method: str, gate: Gate, audited: bool
) -> Callable[..., Any]:
    async def single(request: Any, context: Any) -> Any:
        admitted = _admit(gate, method, context)
        identity = admitted.identity
        if identity is None:
            await context.abort(admitted.code, admitted.why)
            return None
        outcome = "OK"
        try:
            with policy.calling(identity), _peer_of_call(admitted.peer):
                return await behaviour(request, context)
        except grpc.aio.AbortError:
            # Refused: ``status.log_refusal`` wrote the one line, with identity and peer.
            outcome = ""
            raise
        except BaseException:
            outcome = "CANCELLED"
            raise
        finally:
            if audited and outcome:
                _log(identity, admitted.peer, method, outcome)

    return single


def _async_stream(
    behaviour: Callable[..., Any], method: str, gate: Gate, audited: bool
) -> Callable[..., Any]:
    async def responses(request: Any, context: Any) -> AsyncIterator[Any]:
        admitted = _admit(gate, method, context)
        identity = admitted.identity
        if identity is None:
            await context.abort(admitted.code, admitted.why)
        outcome = "OK"
        reset = policy.CALLER.set(identity)
        reset_peer = CALL_PEER.set(admitted.peer)
        inner = behaviour(request, context)
        try:
            async for response in inner:
                yield response
        except grpc.aio.AbortError:
            # Refused: ``status.log_refusal`` wrote the one line, with identity and peer.
            outcome = ""
            raise
        except BaseException:
            outcome = "CANCELLED"
            raise
        finally:
            # Closed now, not when the collector finds it (StreamEvents starts the
            # session's lease in its clean-up), and still as this caller.
            await inner.aclose()
            with contextlib.suppress(ValueError):  # closed from another context
                policy.CALLER.reset(reset)
                CALL_PEER.reset(reset_peer)
            if audited and outcome:
                _log(identity, admitted.peer, method, outcome)

    return responses


def _sync_unary(behaviour: Callable[..., Any], method: str, gate: Gate) -> Callable[..., Any]:
    def single(request: Any, context: grpc.ServicerContext) -> Any:
        admitted = _admit(gate, method, context)
        if admitted.identity is None:
            context.abort(admitted.code, admitted.why)
        return behaviour(request, context)

    return single


def _sync_stream(behaviour: Callable[..., Any], method: str, gate: Gate) -> Callable[..., Any]:
    # Called on the event loop to make its iterator: the check runs inside, in the pool
    # (the sync abort waits for the loop; see hwbkptd.api.decoding).
    def responses(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        admitted = _admit(gate, method, context)
        if admitted.identity is None:
            context.abort(admitted.code, admitted.why)
        yield from behaviour(request, context)

    return responses
