"""The blocking client's gRPC side: one channel, its unary calls, the event stream and the
resume stream. The clients and sessions reach the broker only through a ``Transport``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from grpc_health.v1 import health_pb2_grpc

from hwbkpt import _calls as calls
from hwbkpt import _convert as cv
from hwbkpt import models as m
from hwbkpt._address import default_address, grpc_target
from hwbkpt._credentials import Credentials, session_metadata
from hwbkpt._health import health_request, status_name
from hwbkpt.errors import HwbkptError, from_rpc_error
from hwbkpt.v1 import broker_pb2 as pb
from hwbkpt.v1 import broker_pb2_grpc, sim_pb2_grpc

__all__ = [
    "CALL_TIMEOUT",
    "CHANNEL_OPTIONS",
    "EventBatch",
    "EventStream",
    "ThreadResumer",
    "Transport",
]

T = TypeVar("T")
EventBatch = RepeatedCompositeFieldContainer[pb.Event]

#: Seconds a unary call may take before it fails with DEADLINE_EXCEEDED.
CALL_TIMEOUT = 30.0

# gRPC's own reconnect backoff starts at 1 s and grows to 2 min; a session that must
# come back within its lease needs the channel to retry far sooner than that.
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


class Transport:
    """A blocking connection to the broker at ``address`` (``None``: the default).

    Every failure is raised as :class:`HwbkptError`. ``timeout`` (seconds) bounds each
    unary call and may be changed at any time.
    """

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
            grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
            if tls is None
            else grpc.secure_channel(target, tls, options=CHANNEL_OPTIONS)
        )
        self._broker = broker_pb2_grpc.BrokerServiceStub(self._channel)
        self._sim = sim_pb2_grpc.SimServiceStub(self._channel)

    def health(self, service: str, timeout: float) -> str:
        """The gRPC health service's answer for ``service`` ("" the whole server)."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            answer = stub.Check(health_request(service), timeout=timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        return status_name(answer)

    def call(self, call: calls.Call[T], timeout: float | None = None) -> T:
        stub: Any = self._broker if call.service == "broker" else self._sim
        try:
            resp = getattr(stub, call.method)(
                call.request,
                timeout=self.timeout if timeout is None else timeout,
                metadata=session_metadata(self._metadata, call.token),
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        return call.answer(resp)

    def watch_slot_map(self, request: pb.WatchSlotMapRequest) -> Iterator[m.SlotMapUpdate]:
        """The WatchSlotMap stream's updates; closing the iterator (or the channel) ends it."""
        call = self._broker.WatchSlotMap(request, metadata=self._metadata)
        try:
            for answer in call:
                yield cv.slot_update_from_pb(answer)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        finally:
            call.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs

    def stream_events(self, request: pb.StreamEventsRequest, token: str) -> EventStream:
        return EventStream(
            self._broker.StreamEvents(request, metadata=session_metadata(self._metadata, token))
        )

    def thread_resumer(self) -> ThreadResumer:
        """What resumes one session's halted threads (its resume stream opens at first use)."""
        return ThreadResumer(self)

    def open_resume_stream(
        self, requests: Iterator[pb.ResumeThreadsStreamRequest], token: str
    ) -> grpc.CallIterator[pb.ResumeThreadsStreamResponse]:
        """A ResumeThreadsStream call of session ``token`` sending ``requests``; its
        answers, in order."""
        return self._broker.ResumeThreadsStream(
            requests, metadata=session_metadata(self._metadata, token)
        )

    def close(self) -> None:
        self._channel.close()


class EventStream:
    """One ``StreamEvents`` call: iterate for its batches of events; ``cancel`` ends it."""

    def __init__(self, call: grpc.CallIterator[pb.StreamEventsResponse]) -> None:
        self._call = call

    def __iter__(self) -> Iterator[EventBatch]:
        try:
            for resp in self._call:
                yield resp.events
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    def cancel(self) -> None:
        self._call.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs


class _End:
    """Queue marker: the resume stream is over."""


_END = _End()


class _ResumeStream:
    """One long-lived ResumeThreadsStream call. Requests go in through a queue (gRPC sends
    them from its own thread); a reader thread hands each answer over, so that waiting for
    one can time out."""

    def __init__(self, transport: Transport, token: str) -> None:
        self.token = token
        self._requests: queue.SimpleQueue[pb.ResumeThreadsStreamRequest | None] = (
            queue.SimpleQueue()
        )
        self._answers: queue.SimpleQueue[pb.ResumeThreadsStreamResponse | grpc.RpcError | _End] = (
            queue.SimpleQueue()
        )
        self._call = transport.open_resume_stream(iter(self._requests.get, None), token)
        threading.Thread(target=self._read, name="hwbkpt-resume", daemon=True).start()

    def _read(self) -> None:
        try:
            for resp in self._call:
                self._answers.put(resp)
        except grpc.RpcError as err:
            self._answers.put(err)
        else:
            self._answers.put(_END)

    @property
    def ended(self) -> bool:
        return not self._call.is_active()

    def ask(
        self, request: pb.ResumeThreadsStreamRequest, timeout: float
    ) -> pb.ResumeThreadsStreamResponse | grpc.RpcError | _End | None:
        """The answer to ``request``: a response, a ``grpc.RpcError`` or the end marker;
        ``None`` after ``timeout`` seconds."""
        self._requests.put(request)
        try:
            return self._answers.get(timeout=timeout)
        except queue.Empty:
            return None

    def cancel(self) -> None:
        self._requests.put(None)  # ends the request iterator gRPC reads in its thread
        self._call.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs


class ThreadResumer:
    """Resumes one session's halted threads.

    The requests share one ``ResumeThreadsStream`` call, which answers in about half the
    time of a new call; a broker without it is asked with ``ResumeThreads``.
    """

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._lock = threading.Lock()
        self._stream: _ResumeStream | None = None
        #: The broker predates ResumeThreadsStream: resume with unary calls.
        self._unary = False

    def resume(self, token: str, tids: Sequence[int]) -> tuple[int, ...]:
        if not self._unary:
            with self._lock:
                resp = self._on_stream(token, tids)
            if resp is not None:
                return calls.resumed_on_stream(resp)
        return self._transport.call(calls.resume_threads(token, tids))

    def _on_stream(self, token: str, tids: Sequence[int]) -> pb.ResumeThreadsStreamResponse | None:
        """One request and its answer on the resume stream; None: the broker lacks it."""
        stream = self._stream
        if stream is not None and stream.token != token:
            self.close()  # the stream's metadata names another session
            stream = None
        if stream is None or stream.ended:
            # Nothing was sent on a call that has ended (the connection broke while it was
            # idle): a new one is safe.
            stream = self._stream = _ResumeStream(self._transport, token)
        request = calls.resume_threads_on_stream(tids)
        try:
            answer = stream.ask(request, self._transport.timeout)
        except BaseException:
            # Interrupted between the request and its answer: a later reader would get
            # this answer, so the call cannot be used again.
            self.close()
            raise
        if isinstance(answer, pb.ResumeThreadsStreamResponse):
            return answer
        self.close()
        if isinstance(answer, grpc.RpcError):
            err = from_rpc_error(answer)
            if err.code == "UNIMPLEMENTED":
                # Refused before reading anything: nothing was resumed, ask the old way.
                self._unary = True
                return None
            raise err
        if answer is None:
            raise HwbkptError("DEADLINE_EXCEEDED", "ResumeThreadsStream did not answer")
        raise HwbkptError("UNAVAILABLE", "the broker ended the resume stream")

    def close(self) -> None:
        """End the resume stream (the next resume opens a new one)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()
