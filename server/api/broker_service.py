"""``hwbkpt.v1.BrokerService``: thin glue from gRPC to the domain ``Broker``.

Each method reads its request (``convert`` raises on what the domain cannot
name), calls the broker and converts the answer. Errors become statuses in
``status``; nothing here decides anything about breakpoints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from hwbkpt.v1 import broker_pb2, broker_pb2_grpc
from hwbkptd.api import convert, convert_events
from hwbkptd.api.answer_size import split_events
from hwbkptd.api.convert_names import resolution_to_proto
from hwbkptd.api.credentials import SESSION_TOKEN_KEY, metadata_value
from hwbkptd.api.pages import breakpoints_page, slot_map_page
from hwbkptd.api.slot_watch import watch_slot_map
from hwbkptd.api.status import Context, guard, guard_stream, to_rpc_status
from hwbkptd.core import policy
from hwbkptd.core.broker import Broker, Identity
from hwbkptd.core.errors import BrokerError

__all__ = ["BrokerService", "identity_for", "session_token"]


def identity_for(context: Context) -> Identity:
    """Who is calling: what ``hwbkptd.api.gate`` found for this call.

    Without the gate (a servicer used on its own) the caller is judged by its listener
    as before the policy existed: the Unix socket and plain loopback TCP, fully trusted.
    """
    identity = policy.CALLER.get()
    if identity is not None:
        return identity
    peer = context.peer() or ""
    if peer.startswith("unix:"):
        return Identity(name=policy.LOCAL, via=policy.LOCAL)
    return Identity(name=policy.LOOPBACK, via=policy.LOOPBACK)


def session_token(context: Context) -> str:
    """The session secret of this call, from its metadata (never from a message body)."""
    # Refusals name it "token", as they did when it was a field of the request.
    return convert.token_from_proto(
        metadata_value(context.invocation_metadata(), SESSION_TOKEN_KEY), "token"
    )


class BrokerService(broker_pb2_grpc.BrokerServiceServicer):
    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    # --- sessions ---------------------------------------------------------------
    @guard
    async def OpenSession(
        self, request: broker_pb2.OpenSessionRequest, context: Context
    ) -> broker_pb2.OpenSessionResponse:
        identity = identity_for(context)
        info = self._broker.open_session(
            request.name,
            lease_seconds=convert.duration_from_proto(request.lease, "lease"),
            hit_buffer=request.hit_buffer,
            identity=identity,
        )
        return convert.session_to_open_response(info)

    @guard
    async def ResumeSession(
        self, request: broker_pb2.ResumeSessionRequest, context: Context
    ) -> broker_pb2.ResumeSessionResponse:
        info = self._broker.resume_session(session_token(context))
        return convert.session_to_resume_response(info)

    @guard
    async def CloseSession(
        self, request: broker_pb2.CloseSessionRequest, context: Context
    ) -> broker_pb2.CloseSessionResponse:
        await self._broker.close_session(session_token(context))
        return broker_pb2.CloseSessionResponse()

    @guard_stream
    async def StreamEvents(
        self, request: broker_pb2.StreamEventsRequest, context: Context
    ) -> AsyncIterator[broker_pb2.StreamEventsResponse]:
        token = session_token(context)
        batches = self._broker.events(token, request.after_seq)
        runs = request.hit_runs
        try:
            async for batch in batches:
                response = convert_events.events_to_proto(batch, hit_runs=runs)
                for msg in split_events(response):
                    yield msg
        finally:
            # On cancellation (the client went away) the broker's iterator must
            # learn it now, not when the garbage collector finds it: that is what
            # starts the session's lease.
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                await aclose()

    # --- requests ---------------------------------------------------------------
    @guard
    async def SetBreakpoint(
        self, request: broker_pb2.SetBreakpointRequest, context: Context
    ) -> broker_pb2.SetBreakpointResponse:
        token = session_token(context)
        spec = convert.spec_from_proto(request.spec)
        view = await self._broker.set_breakpoint(token, spec)
        return broker_pb2.SetBreakpointResponse(breakpoint=convert.breakpoint_to_proto(view))

    @guard
    async def ModifyBreakpoint(
        self, request: broker_pb2.ModifyBreakpointRequest, context: Context
    ) -> broker_pb2.ModifyBreakpointResponse:
        token = session_token(context)
        priority = (
            convert.priority_from_proto(request.priority, "priority")
            if request.HasField("priority")
            else None
        )
        action = convert.action_from_proto(request.action, "action", unset=None)
        flt = convert.filter_from_proto(request.filter) if request.HasField("filter") else None
        view = await self._broker.modify_breakpoint(
            token, request.breakpoint_id, priority=priority, action=action, filter=flt
        )
        return broker_pb2.ModifyBreakpointResponse(breakpoint=convert.breakpoint_to_proto(view))

    @guard
    async def RemoveBreakpoint(
        self, request: broker_pb2.RemoveBreakpointRequest, context: Context
    ) -> broker_pb2.RemoveBreakpointResponse:
        token = session_token(context)
        await self._broker.remove_breakpoint(token, request.breakpoint_id)
        return broker_pb2.RemoveBreakpointResponse()

    @guard
    async def ListBreakpoints(
        self, request: broker_pb2.ListBreakpointsRequest, context: Context
    ) -> broker_pb2.ListBreakpointsResponse:
        views = self._broker.list_breakpoints(session_token(context))
        return breakpoints_page(views, page_size=request.page_size, page_token=request.page_token)

    @guard
    async def ResumeThreads(
        self, request: broker_pb2.ResumeThreadsRequest, context: Context
    ) -> broker_pb2.ResumeThreadsResponse:
        token = session_token(context)
        resumed = await self._broker.resume_threads(token, tuple(request.tids))
        return broker_pb2.ResumeThreadsResponse(resumed_tids=resumed)

    @guard_stream
    async def ResumeThreadsStream(
        self,
        requests: AsyncIterator[broker_pb2.ResumeThreadsStreamRequest],
        context: Context,
    ) -> AsyncIterator[broker_pb2.ResumeThreadsStreamResponse]:
        # One answer per request, in order. A refusal is an answer, not the end of the
        # stream: the client keeps its stream for the next hit.
        async for request in requests:
            try:
                token = session_token(context)
                resumed = await self._broker.resume_threads(token, tuple(request.tids))
            except BrokerError as err:
                status = to_rpc_status(err).SerializeToString()
                yield broker_pb2.ResumeThreadsStreamResponse(error_status=status)
                continue
            yield broker_pb2.ResumeThreadsStreamResponse(resumed_tids=resumed)

    # --- views ------------------------------------------------------------------
    @guard
    async def DescribeMachine(
        self, request: broker_pb2.DescribeMachineRequest, context: Context
    ) -> broker_pb2.DescribeMachineResponse:
        desc = self._broker.describe()
        answer = convert.machine_to_proto(desc)
        answer.limits.extend(
            broker_pb2.Limit(name=x.name, value=float(x.value), flag=x.flag, description=x.what)
            for x in desc.limits
        )
        return answer

    @guard
    async def GetSlotMap(
        self, request: broker_pb2.GetSlotMapRequest, context: Context
    ) -> broker_pb2.GetSlotMapResponse:
        return slot_map_page(
            self._broker.slot_map(request.pid),
            pools=self._broker.describe().pools,
            page_size=request.page_size,
            page_token=request.page_token,
            pool=request.pool,
        )

    @guard_stream
    async def WatchSlotMap(
        self, request: broker_pb2.WatchSlotMapRequest, context: Context
    ) -> AsyncIterator[broker_pb2.WatchSlotMapResponse]:
        async for update in watch_slot_map(self._broker, request):
            yield update

    # --- processes --------------------------------------------------------------
    @guard
    async def AttachProcess(
        self, request: broker_pb2.AttachProcessRequest, context: Context
    ) -> broker_pb2.AttachProcessResponse:
        token = session_token(context)
        tids = await self._broker.attach_process(
            token, request.pid, follow_fork=request.follow_fork
        )
        return broker_pb2.AttachProcessResponse(pid=request.pid, tids=tids)

    @guard
    async def LaunchProcess(
        self, request: broker_pb2.LaunchProcessRequest, context: Context
    ) -> broker_pb2.LaunchProcessResponse:
        token = session_token(context)
        pid = await self._broker.launch_process(
            token,
            tuple(request.argv),
            dict(request.env),
            request.cwd,
            follow_fork=request.follow_fork,
        )
        return broker_pb2.LaunchProcessResponse(pid=pid)

    @guard
    async def ReleaseProcess(
        self, request: broker_pb2.ReleaseProcessRequest, context: Context
    ) -> broker_pb2.ReleaseProcessResponse:
        token = session_token(context)
        await self._broker.release_process(token, request.pid)
        return broker_pb2.ReleaseProcessResponse()

    @guard
    async def DetachProcess(
        self, request: broker_pb2.DetachProcessRequest, context: Context
    ) -> broker_pb2.DetachProcessResponse:
        token = session_token(context)
        released, removed = await self._broker.detach_process(token, request.pid)
        return broker_pb2.DetachProcessResponse(released=released, removed_breakpoint_ids=removed)

    # --- names ------------------------------------------------------------------
    @guard
    async def ResolveLocation(
        self, request: broker_pb2.ResolveLocationRequest, context: Context
    ) -> broker_pb2.ResolveLocationResponse:
        token = session_token(context)
        access = convert.access_from_proto(request.access, "access")
        resolved = await self._broker.resolve_location(token, request.pid, request.location, access)
        return broker_pb2.ResolveLocationResponse(resolution=resolution_to_proto(resolved))
