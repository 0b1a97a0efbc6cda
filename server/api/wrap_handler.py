"""Wrapping a gRPC method handler's behaviour, once per method: what the server's
interceptors (``gate``, ``decoding``, ``admission``) share.

A handler has one behaviour of four kinds (unary or streaming requests and answers);
``behaviour_of`` finds it, ``rebuilt`` makes the handler of the same kind around a new
behaviour (grpc.aio tells an async generator from a coroutine by the function's kind, so
a wrapper must keep it), and ``WrappingInterceptor`` resolves each method's handler,
wraps it once and hands out the wrapped one while the server keeps the same handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

__all__ = ["Behaviour", "Handler", "WrappingInterceptor", "behaviour_of", "rebuilt"]

Behaviour = Callable[..., Any]

# grpc's runtime classes are not generic; only its stubs are.
if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.aio.ServerInterceptor


def _maker(handler: Handler) -> Callable[..., Handler]:
    kinds: dict[tuple[bool, bool], Callable[..., Handler]] = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    return kinds[(bool(handler.request_streaming), bool(handler.response_streaming))]


def behaviour_of(handler: Handler) -> Behaviour | None:
    """The handler's behaviour, whichever of the four kinds it is; None if it has none."""
    if handler.request_streaming:
        return handler.stream_stream if handler.response_streaming else handler.stream_unary
    return handler.unary_stream if handler.response_streaming else handler.unary_unary


def rebuilt(
    handler: Handler,
    behaviour: Behaviour,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> Handler:
    """A handler of ``handler``'s kind doing ``behaviour``, with its serializers (its
    request deserializer replaced when one is given)."""
    return _maker(handler)(
        behaviour,
        request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class WrappingInterceptor(_Interceptor):
    """A server interceptor that wraps the handler of every method it ``applies`` to."""

    def __init__(self) -> None:
        #: method -> (the handler resolved, its wrapped form)
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def applies(self, method: str) -> bool:
        """Whether ``method``'s handler is to be wrapped (every method by default)."""
        return True

    def wrap(self, handler: Handler, method: str) -> Handler:
        """``handler`` wrapped; called once per method and handler."""
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler: Handler | None = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.applies(method):
            return handler  # None: an unknown method, which grpc answers UNIMPLEMENTED
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self.wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped
