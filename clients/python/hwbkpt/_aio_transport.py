"""The asyncio client's gRPC side, mirroring ``hwbkpt._transport``: one channel, its unary
calls, the event stream and the resume stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2_grpc

from hwbkpt import _calls as calls
from hwbkpt import _convert as cv
from hwbkpt import models as m
from hwbkpt._address import default_address, grpc_target
from hwbkpt._credentials import Credentials, session_metadata
from hwbkpt._health import health_request, status_name
from hwbkpt._transport import CALL_TIMEOUT, CHANNEL_OPTIONS, EventBatch
from hwbkpt.errors import HwbkptError, from_rpc_error
from hwbkpt.v1 import broker_pb2 as pb
from hwbkpt.v1 import broker_pb2_grpc, sim_pb2_grpc

__all__ = ["AsyncEventStream", "AsyncThreadResumer", "AsyncTransport"]

T = TypeVar("T")
_EventCall = grpc.aio.UnaryStreamCall[pb.StreamEventsRequest, pb.StreamEventsResponse]
_ResumeCall = grpc.aio.StreamStreamCall[
    pb.ResumeThreadsStreamRequest, pb.ResumeThreadsStreamResponse
]


class AsyncTransport:
    """An asyncio connection to the broker; the same calls as :class:`Transport`, as
    coroutines. Create it inside a running event loop."""

    def __init__(
        self,
        address: str | None,
        timeout: float = CALL_TIMEOUT,
        credentials: Credentials | None = None,
    ) -> None:
        self.address = address if address is not None else default_address()
        self.timeout = timeout
        credentials = credentials or Credentials()
        self._metadata = credentials.metadata()
        tls = credentials.channel_credentials()
        target = grpc_target(self.address)
        self._channel = (
            grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
            if tls is None
            else grpc.aio.secure_channel(target, tls, options=CHANNEL_OPTIONS)
        )
        self._broker = broker_pb2_grpc.BrokerServiceStub(self._channel)
        self._sim = sim_pb2_grpc.SimServiceStub(self._channel)

    # ``timeout`` is the call's gRPC deadline, sent to the broker, hence the noqa.
    async def call(self, call: calls.Call[T], timeout: float | None = None) -> T:  # noqa: ASYNC109
        stub: Any = self._broker if call.service == "broker" else self._sim
        try:
            resp = await getattr(stub, call.method)(
                call.request,
                timeout=self.timeout if timeout is None else timeout,
                metadata=session_metadata(self._metadata, call.token),
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        return call.answer(resp)

    async def health(self, service: str, timeout: float) -> str:  # noqa: ASYNC109
        """The gRPC health service's answer for ``service`` ("" the whole server)."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            answer = await stub.Check(health_request(service), timeout=timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        return status_name(answer)

    async def watch_slot_map(
        self, request: pb.WatchSlotMapRequest
    ) -> AsyncIterator[m.SlotMapUpdate]:
        """The WatchSlotMap stream's updates; closing the iterator (or the channel) ends it."""
        call = self._broker.WatchSlotMap(request, metadata=self._metadata)
        try:
            async for answer in call:
                yield cv.slot_update_from_pb(answer)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        finally:
            call.cancel()

    def stream_events(self, request: pb.StreamEventsRequest, token: str) -> AsyncEventStream:
        return AsyncEventStream(
            self._broker.StreamEvents(request, metadata=session_metadata(self._metadata, token))
        )

    def thread_resumer(self) -> AsyncThreadResumer:
        """What resumes one session's halted threads (its resume stream opens at first use)."""
        return AsyncThreadResumer(self)

    def open_resume_stream(self, token: str) -> _ResumeCall:
        """A ResumeThreadsStream call of session ``token``, written to one request per
        resume."""
        return self._broker.ResumeThreadsStream(
            None, metadata=session_metadata(self._metadata, token)
        )

    async def close(self) -> None:
        await self._channel.close(None)


class AsyncEventStream:
    """One ``StreamEvents`` call: ``async for`` its batches of events; ``cancel`` ends it.

    A cancelled call raises ``asyncio.CancelledError`` in its reader, as grpc.aio does.
    """

    def __init__(self, call: _EventCall) -> None:
        self._call = call

    async def __aiter__(self) -> AsyncIterator[EventBatch]:
        try:
            async for resp in self._call:
                yield resp.events
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    def cancel(self) -> None:
        self._call.cancel()


class AsyncThreadResumer:
    """Resumes one session's halted threads.

    The requests share one ``ResumeThreadsStream`` call, which answers in about half the
    time of a new call; a broker without it is asked with ``ResumeThreads``.
    """

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport
        self._lock = asyncio.Lock()
        self._call: _ResumeCall | None = None
        self._call_token = ""
        #: The broker predates ResumeThreadsStream: resume with unary calls.
        self._unary = False

    async def resume(self, token: str, tids: Sequence[int]) -> tuple[int, ...]:
        if not self._unary:
            async with self._lock:
                resp = await self._on_stream(token, tids)
            if resp is not None:
                return calls.resumed_on_stream(resp)
        return await self._transport.call(calls.resume_threads(token, tids))

    async def _on_stream(
        self, token: str, tids: Sequence[int]
    ) -> pb.ResumeThreadsStreamResponse | None:
        """One request and its answer on the resume stream; None: the broker lacks it."""
        call = self._call
        if call is not None and self._call_token != token:
            self.close()  # the call's metadata names another session
            call = None
        if call is None or call.done():
            # Nothing was sent on a call that has ended (the connection broke while it was
            # idle): a new one is safe. No request iterator: it is written to, one request
            # per resume.
            call = self._call = self._transport.open_resume_stream(token)
            self._call_token = token
        try:
            async with asyncio.timeout(self._transport.timeout):
                await call.write(calls.resume_threads_on_stream(tids))
                resp = await call.read()
        except grpc.RpcError as rpc_err:
            self.close()
            err = from_rpc_error(rpc_err)
            if err.code == "UNIMPLEMENTED":
                # Refused before reading anything: nothing was resumed, ask the old way.
                self._unary = True
                return None
            raise err from None
        except asyncio.InvalidStateError:
            # The call ended between the check above and the write.
            self.close()
            raise HwbkptError("UNAVAILABLE", "the resume stream ended") from None
        except TimeoutError:
            self.close()
            raise HwbkptError("DEADLINE_EXCEEDED", "ResumeThreadsStream did not answer") from None
        except BaseException:
            # Cancelled between the request and its answer: a later reader would get
            # this answer, so the call cannot be used again.
            self.close()
            raise
        if not isinstance(resp, pb.ResumeThreadsStreamResponse):  # grpc.aio.EOF
            self.close()
            raise HwbkptError("UNAVAILABLE", "the broker ended the resume stream")
        return resp

    def close(self) -> None:
        """End the resume stream (the next resume opens a new one)."""
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
