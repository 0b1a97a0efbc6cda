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
from collections.abc import AsyncIterator
from typing import Any

from hwbkpt.v1 import broker_pb2
from hwbkptd.api.broker_service import identity_for
from hwbkptd.api.status import Context, refuse
from hwbkptd.api.wrap_handler import Handler, WrappingInterceptor, behaviour_of, rebuilt
from hwbkptd.core.errors import ResourceExhausted
from hwbkptd.core.limits import IdentityQuotas

__all__ = ["AdmitCalls"]

_PREFIX = "/" + broker_pb2.DESCRIPTOR.services_by_name["BrokerService"].full_name + "/"


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


class AdmitCalls(WrappingInterceptor):
    """Charges every BrokerService call to its identity's limits (``IdentityQuotas``)."""

    def __init__(self, quotas: IdentityQuotas) -> None:
        super().__init__()
        self._quotas = quotas

    def applies(self, method: str) -> bool:
        return method.startswith(_PREFIX)

    def wrap(self, handler: Handler, method: str) -> Handler:
        name = method.rsplit("/", 1)[-1]
        behaviour = behaviour_of(handler)
        if inspect.isasyncgenfunction(behaviour):
            return rebuilt(handler, _streaming(self._quotas, behaviour, name))
        if inspect.iscoroutinefunction(behaviour):
            return rebuilt(handler, _unary(self._quotas, behaviour, name))
        return handler  # the servicers here are all asynchronous
