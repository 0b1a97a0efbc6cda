"""Request bytes that do not parse are the client's error: INVALID_ARGUMENT, on every method.

grpc.aio decodes a request before any handler runs. A ``DecodeError`` there became
UNKNOWN with a traceback in the log, and inside a client stream it reached the
servicer as an unexpected exception (INTERNAL). The interceptor here wraps every
method handler the server resolves (ours, health's and reflection's alike): the
deserializer returns an :class:`Undecodable` marker instead of raising, and the
wrapped behaviour answers the marker through ``status.refuse``, one log line and
INVALID_ARGUMENT naming ``request``. Inside a stream the call ends there: the
bytes after a corrupt message cannot be trusted to be what the client meant.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NoReturn

import grpc
import grpc.aio

from hwbkptd.api.status import Context, log_refusal, refuse, to_status
from hwbkptd.api.wrap_handler import Handler, WrappingInterceptor, behaviour_of, rebuilt
from hwbkptd.core.errors import InvalidArgument

__all__ = ["REQUEST_FIELD", "RejectUndecodable", "Undecodable", "wrap_handler"]

#: The field a refusal names: the whole request message.
REQUEST_FIELD = "request"

_Behaviour = Callable[..., Any]


class Undecodable:
    """Stands in for a request message whose bytes did not parse."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _decoder(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        # Whatever the parser raises (DecodeError, or a RecursionError on deep
        # nesting in the pure-Python protobuf), the bytes are not a message.
        except Exception as err:
            return Undecodable(f"the bytes are not a valid request message ({err})")

    return decode


def _refusal(method: str, bad: Undecodable) -> tuple[str, InvalidArgument]:
    # The short name, as the servicers' own refusals log it.
    return method.rsplit("/", 1)[-1], InvalidArgument(REQUEST_FIELD, bad.reason)


async def _refuse(context: Context, method: str, bad: Undecodable) -> NoReturn:
    await refuse(context, *_refusal(method, bad))


def _refuse_sync(context: grpc.ServicerContext, method: str, bad: Undecodable) -> NoReturn:
    name, err = _refusal(method, bad)
    log_refusal(name, err)
    status = to_status(err)
    context.set_trailing_metadata(status.trailing_metadata)
    context.abort(status.code, status.details)


async def _checked(
    requests: AsyncIterator[Any], context: Context, method: str
) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Undecodable):
            await _refuse(context, method, request)
        yield request


def _checked_sync(
    requests: Iterator[Any], context: grpc.ServicerContext, method: str
) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, Undecodable):
            _refuse_sync(context, method, request)
        yield request


def _async_behaviour(behaviour: _Behaviour, method: str, request_stream: bool) -> _Behaviour:
    def arguments(request: Any, context: Context) -> Any:
        return _checked(request, context, method) if request_stream else request

    if inspect.isasyncgenfunction(behaviour):
        # grpc.aio tells an async generator handler from a writer-style coroutine by
        # the function's kind, so the wrapper must be of the same kind.
        async def responses(request: Any, context: Context) -> AsyncIterator[Any]:
            if isinstance(request, Undecodable):
                await _refuse(context, method, request)
            inner = behaviour(arguments(request, context), context)
            try:
                async for response in inner:
                    yield response
            finally:
                # Closed now, not when the collector finds it: StreamEvents starts the
                # session's lease in its own clean-up.
                await inner.aclose()

        return responses

    async def single(request: Any, context: Context) -> Any:
        if isinstance(request, Undecodable):
            await _refuse(context, method, request)
        return await behaviour(arguments(request, context), context)

    return single


def _sync_behaviour(
    behaviour: _Behaviour, method: str, request_stream: bool, response_stream: bool
) -> _Behaviour:
    # grpc.aio runs a synchronous handler (health's List is one) in its thread pool, and
    # the sync context's abort blocks until the event loop has sent the status. A
    # streaming one is called on the event loop itself to make its iterator, where that
    # abort would wait for itself, so its check runs inside the generator, in the pool.
    def arguments(request: Any, context: grpc.ServicerContext) -> Any:
        return _checked_sync(request, context, method) if request_stream else request

    if response_stream:

        def responses(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            if isinstance(request, Undecodable):
                _refuse_sync(context, method, request)
            yield from behaviour(arguments(request, context), context)

        return responses

    def single(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            _refuse_sync(context, method, request)
        return behaviour(arguments(request, context), context)

    return single


def wrap_handler(handler: Handler, method: str) -> Handler:
    """``handler`` answering undecodable requests with INVALID_ARGUMENT.

    A handler without a deserializer takes raw bytes and cannot fail to decode.
    """
    deserialize = handler.request_deserializer
    if deserialize is None:
        return handler
    behaviour = behaviour_of(handler)
    if behaviour is None:
        return handler
    streams = (handler.request_streaming, handler.response_streaming)
    if inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour):
        wrapped = _async_behaviour(behaviour, method, streams[0])
    else:
        wrapped = _sync_behaviour(behaviour, method, *streams)
    return rebuilt(handler, wrapped, request_deserializer=_decoder(deserialize))


class RejectUndecodable(WrappingInterceptor):
    """The server interceptor applying :func:`wrap_handler` to every method, once each."""

    def wrap(self, handler: Handler, method: str) -> Handler:
        return wrap_handler(handler, method)
