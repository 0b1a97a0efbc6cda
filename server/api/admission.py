"""Per-identity call limits at the door: calls per second and open streams (issue 12).

A server interceptor wraps every ``BrokerService`` method. Before the servicer runs,
the caller's identity (``broker_service.identity_for``) takes a token from its bucket
and, for a streaming method, a stream from its quota; the stream is given back when
the call ends, however it ends. A refusal is RESOURCE_EXHAUSTED naming the limit,
answered through ``status.refuse`` like any other. Health and reflection are not
counted. Put it after the interceptor that authenticates (identity comes first).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from hwbkpt.v1 import broker_pb2
from hwbkptd.api.broker_service import identity_for
from hwbkptd.api.status import Context, refuse
from hwbkptd.core.errors import ResourceExhausted
from hwbkptd.core.limits import IdentityQuotas

__all__ = ["AdmitCalls"]

_PREFIX = "/" + broker_pb2.DESCRIPTOR.services_by_name["BrokerService"].full_name + "/"

if TYPE_CHECKING:
    _Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.aio.ServerInterceptor


def _streaming(quotas: IdentityQuotas, behaviour: Any, method: str) -> Any:
    async def responses(request: Any, context: Context) -> AsyncIterator[Any]:
        name = identity_for(context).name
        try:
            quotas.admit_call(name)
            close = quotas.open_stream(name)
        except ResourceExhausted as err:
            await refuse(context, method, err)
        try:
            inner = behaviour(request, context)
            try:
                async for response in inner:
                    yield response
            finally:
                await inner.aclose()
        finally:
            close()

    return responses


def _unary(quotas: IdentityQuotas, behaviour: Any, method: str) -> Any:
    async def single(request: Any, context: Context) -> Any:
        try:
            quotas.admit_call(identity_for(context).name)
        except ResourceExhausted as err:
            await refuse(context, method, err)
        return await behaviour(request, context)

    return single


def _wrap(handler: _Handler, quotas: IdentityQuotas, method: str) -> _Handler:
    name = method.rsplit("/", 1)[-1]
    kinds: tuple[tuple[Any, Callable[..., _Handler]], ...] = (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    )
    for behaviour, make in kinds:
        if behaviour is None:
            continue
        if inspect.isasyncgenfunction(behaviour):
            wrapped = _streaming(quotas, behaviour, name)
        elif inspect.iscoroutinefunction(behaviour):
            wrapped = _unary(quotas, behaviour, name)
        else:
            return handler  # the servicers here are all asynchronous
        return make(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


class AdmitCalls(_Interceptor):
    """Charges every BrokerService call to its identity's limits (``IdentityQuotas``)."""

    def __init__(self, quotas: IdentityQuotas) -> None:
        self._quotas = quotas
        self._wrapped: dict[str, tuple[_Handler, _Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler: _Handler | None = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(_PREFIX):
            return handler
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = _wrap(handler, self._quotas, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped
