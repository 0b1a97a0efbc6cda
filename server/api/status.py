"""The one module that turns domain errors into gRPC statuses (DESIGN section 7).

Every servicer method is wrapped by :func:`guard` (unary) or :func:`guard_stream`
(server streaming). A ``BrokerError`` becomes its documented status, with a
``google.rpc.BadRequest`` detail when a field is at fault, so clients can read
``field_violations`` with ``grpc_status.rpc_status.from_call``. Anything else is
a bug: it is logged with its traceback and answered INTERNAL, and the tests
check that nothing a client can send gets there.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import grpc
import grpc.aio
import structlog
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from hwbkptd.api.gate import caller_fields
from hwbkptd.core.clock import SystemClock
from hwbkptd.core.errors import (
    Aborted,
    BrokerError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from hwbkptd.core.log_limit import LineLimiter, Summary

__all__ = [
    "GUARD_MARK",
    "MAX_DETAIL_CHARS",
    "Context",
    "code_for",
    "guard",
    "guard_stream",
    "internal_status",
    "is_guarded",
    "limit_refusal_log",
    "log_refusal",
    "refuse",
    "to_rpc_status",
    "to_status",
]

#: Servicer context as grpc.aio hands it to handlers.
Context = grpc.aio.ServicerContext[Any, Any]

#: Attribute set on guarded methods, so a test can prove that every RPC is guarded.
GUARD_MARK = "__hwbkpt_guarded__"

#: Status messages travel in HTTP/2 trailers, which have a size limit; a reason that
#: quotes client input (a 10 MB name) must not turn a precise error into a transport one.
MAX_DETAIL_CHARS = 512

_log = structlog.get_logger("hwbkptd.api")

_CODES: tuple[tuple[type[BrokerError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Aborted, grpc.StatusCode.ABORTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
)

_Svc = TypeVar("_Svc")
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


def _clip(text: str) -> str:
    if len(text) <= MAX_DETAIL_CHARS:
        return text
    return text[: MAX_DETAIL_CHARS - 3] + "..."


def code_for(err: BrokerError) -> grpc.StatusCode:
    """The status code of a domain error."""
    for cls, code in _CODES:
        if isinstance(err, cls):
            return code
    # A bare BrokerError is still something the client caused: the state does not allow it.
    return grpc.StatusCode.FAILED_PRECONDITION


def _numeric(code: grpc.StatusCode) -> int:
    value: tuple[int, str] = code.value
    return value[0]


def to_rpc_status(err: BrokerError) -> status_pb2.Status:
    """The ``google.rpc.Status`` for a domain error, with BadRequest where a field is at fault."""
    status = status_pb2.Status(code=_numeric(code_for(err)), message=_clip(err.message))
    # InvalidArgument and NotFound always name a field; any other error may carry
    # one too (PermissionDenied on "breakpoint_id"), and then clients see it the same way.
    field = getattr(err, "field", None)
    if isinstance(field, str) and field:
        description = err.reason if isinstance(err, InvalidArgument) else err.message
        bad = error_details_pb2.BadRequest()
        bad.field_violations.add(field=_clip(field), description=_clip(description))
        status.details.add().Pack(bad)
    return status


def to_status(err: BrokerError) -> grpc.Status:
    """The ``grpc.Status`` (code, details, trailing metadata) for a domain error."""
    status: grpc.Status = rpc_status.to_status(to_rpc_status(err))
    return status


def internal_status(method: str) -> grpc.Status:
    """What a client sees when a handler fails unexpectedly (always a bug)."""
    status = status_pb2.Status(
        code=_numeric(grpc.StatusCode.INTERNAL),
        message=f"internal error in hwbkptd while handling {method} (a bug; see the server log)",
    )
    result: grpc.Status = rpc_status.to_status(status)
    return result


async def _abort(context: Context, status: grpc.Status) -> NoReturn:
    # grpc-stubs does not declare abort_with_status for grpc.aio; abort() with the
    # same trailing metadata is what it does.
    await context.abort(status.code, status.details, status.trailing_metadata)


def _suppressed(held: Summary) -> None:
    total = sum(held.values())
    _log.info(f"{total} similar lines suppressed", suppressed=total, by_kind=held)


#: Refusals and unexpected errors are what a client can make the broker log in a loop:
#: at most 50 at once, then 20 a second, and a count of the rest (issue 12).
_limiter = [LineLimiter(SystemClock(), _suppressed)]


def limit_refusal_log(per_second: float, burst: int) -> LineLimiter:
    """Set the rate of refusal and error lines (the daemon's --refusal-log-* flags)."""
    _limiter[0] = LineLimiter(SystemClock(), _suppressed, per_second=per_second, burst=burst)
    return _limiter[0]


def log_refusal(method: str, err: BrokerError) -> None:
    """The one log line of a refused call (at a bounded rate)."""
    code = code_for(err).name
    if _limiter[0].allow(f"rpc refused {method} {code}"):
        _log.info(
            "rpc refused", method=method, code=code, error=_clip(err.message), **caller_fields()
        )


async def refuse(context: Context, method: str, err: BrokerError) -> NoReturn:
    """End the call with the documented status of ``err``, after one log line."""
    log_refusal(method, err)
    await _abort(context, to_status(err))


async def _fail(context: Context, method: str, exc: Exception) -> NoReturn:
    if isinstance(exc, BrokerError):
        await refuse(context, method, exc)
    if _limiter[0].allow(f"rpc failed {method}"):
        _log.exception("rpc failed unexpectedly", method=method)
    await _abort(context, internal_status(method))


def guard(
    method: Callable[[_Svc, _Req, Context], Awaitable[_Resp]],
) -> Callable[[_Svc, _Req, Context], Coroutine[Any, Any, _Resp]]:
    """Wrap a unary servicer method so errors become documented statuses."""

    @functools.wraps(method)
    async def wrapper(self: _Svc, request: _Req, context: Context) -> _Resp:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _fail(context, method.__name__, exc)

    setattr(wrapper, GUARD_MARK, True)
    return wrapper


def guard_stream(
    method: Callable[[_Svc, _Req, Context], AsyncIterator[_Resp]],
) -> Callable[[_Svc, _Req, Context], AsyncIterator[_Resp]]:
    """Wrap a server-streaming servicer method (an async generator) the same way."""

    @functools.wraps(method)
    async def wrapper(self: _Svc, request: _Req, context: Context) -> AsyncIterator[_Resp]:
        try:
            async for item in method(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _fail(context, method.__name__, exc)

    setattr(wrapper, GUARD_MARK, True)
    return wrapper


def is_guarded(method: object) -> bool:
    return bool(getattr(method, GUARD_MARK, False))
