"""hwbkptd.api.status: domain errors become documented gRPC statuses, over a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import structlog
from google.rpc import error_details_pb2, status_pb2
from session_metadata import session_md

from hwbkpt.v1 import broker_pb2, broker_pb2_grpc, sim_pb2
from hwbkptd.api import status
from hwbkptd.api.broker_service import BrokerService, session_token
from hwbkptd.api.sim_service import SimService
from hwbkptd.core.errors import (
    BrokerError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)

ERRORS: dict[str, tuple[BrokerError, grpc.StatusCode, str | None]] = {
    "invalid": (
        InvalidArgument("spec.length", "zero length"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "spec.length",
    ),
    "notfound": (NotFound("token", "no such session"), grpc.StatusCode.NOT_FOUND, "token"),
    "denied": (PermissionDenied("not yours"), grpc.StatusCode.PERMISSION_DENIED, None),
    "precondition": (
        FailedPrecondition("needs a native machine"),
        grpc.StatusCode.FAILED_PRECONDITION,
        None,
    ),
    "exhausted": (ResourceExhausted("too many"), grpc.StatusCode.RESOURCE_EXHAUSTED, None),
    "bare": (BrokerError("odd"), grpc.StatusCode.FAILED_PRECONDITION, None),
}


@pytest.mark.parametrize("key", sorted(ERRORS))
def test_code_and_detail(key: str) -> None:
    err, code, field = ERRORS[key]
    assert status.code_for(err) is code
    rpc = status.to_rpc_status(err)
    assert rpc.code == code.value[0]
    assert rpc.message == err.message
    if field is None:
        assert not rpc.details
    else:
        bad = error_details_pb2.BadRequest()
        assert rpc.details[0].Unpack(bad)
        assert [v.field for v in bad.field_violations] == [field]
        assert bad.field_violations[0].description


def test_any_error_that_names_a_field_gets_a_bad_request() -> None:
    err = PermissionDenied("breakpoint 3 belongs to session 'a'")
    err.field = "breakpoint_id"  # type: ignore[attr-defined]
    rpc = status.to_rpc_status(err)
    assert rpc.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    bad = error_details_pb2.BadRequest()
    assert rpc.details[0].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("breakpoint_id", "breakpoint 3 belongs to session 'a'")
    ]


def test_grpc_status_carries_the_rich_status() -> None:
    st = status.to_status(InvalidArgument("name", "empty"))
    assert st.code is grpc.StatusCode.INVALID_ARGUMENT
    assert st.details == "name: empty"
    ((key, value),) = st.trailing_metadata
    assert key == "grpc-status-details-bin"
    assert status_pb2.Status.FromString(value).message == "name: empty"


def test_huge_reason_is_clipped() -> None:
    rpc = status.to_rpc_status(InvalidArgument("name", "x" * 10_000_000))
    assert len(rpc.message) <= status.MAX_DETAIL_CHARS
    bad = error_details_pb2.BadRequest()
    rpc.details[0].Unpack(bad)
    assert bad.field_violations[0].field == "name"
    assert len(bad.field_violations[0].description) <= status.MAX_DETAIL_CHARS


def _rpc_methods(service: str, module: object) -> list[str]:
    descriptor = module.DESCRIPTOR.services_by_name[service]  # type: ignore[attr-defined]
    return [m.name for m in descriptor.methods]


@pytest.mark.parametrize(
    ("cls", "service", "module"),
    [(BrokerService, "BrokerService", broker_pb2), (SimService, "SimService", sim_pb2)],
)
def test_every_rpc_is_guarded(cls: type, service: str, module: object) -> None:
    methods = _rpc_methods(service, module)
    assert methods
    unguarded = [m for m in methods if not status.is_guarded(getattr(cls, m))]
    assert unguarded == []


class Raiser(broker_pb2_grpc.BrokerServiceServicer):
    """Raises the error named by the session name, so each mapping goes over the wire."""

    @status.guard
    async def OpenSession(
        self, request: broker_pb2.OpenSessionRequest, context: status.Context
    ) -> broker_pb2.OpenSessionResponse:
        if request.name == "bug":
            raise KeyError("a bug")
        if request.name in ERRORS:
            raise ERRORS[request.name][0]
        return broker_pb2.OpenSessionResponse(session_id="ok")

    @status.guard_stream
    async def StreamEvents(
        self, request: broker_pb2.StreamEventsRequest, context: status.Context
    ) -> AsyncIterator[broker_pb2.StreamEventsResponse]:
        yield broker_pb2.StreamEventsResponse(events=[broker_pb2.Event(seq=1)])
        if session_token(context) == "bug":
            raise RuntimeError("a bug in a stream")
        raise NotFound("token", "session ended")


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[broker_pb2_grpc.BrokerServiceAsyncStub]:
    server = grpc.aio.server()
    # The generated servicer is abstract only in its stub; unimplemented RPCs answer UNIMPLEMENTED.
    broker_pb2_grpc.add_BrokerServiceServicer_to_server(Raiser(), server)  # type: ignore[abstract]
    address = f"unix:{tmp_path}/s.sock"
    server.add_insecure_port(address)
    await server.start()
    async with grpc.aio.insecure_channel(address) as channel:
        yield broker_pb2_grpc.BrokerServiceStub(channel)
    await server.stop(None)


def _violations(err: grpc.aio.AioRpcError) -> list[str]:
    metadata: Any = err.trailing_metadata()  # grpc-stubs types the sync Call's, not aio's
    for key, value in metadata or ():
        if key == "grpc-status-details-bin":
            assert isinstance(value, bytes)
            rich = status_pb2.Status.FromString(value)
            assert rich.code == err.code().value[0]
            fields: list[str] = []
            for detail in rich.details:
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    fields += [v.field for v in bad.field_violations]
            return fields
    return []


@pytest.mark.parametrize("key", sorted(ERRORS))
async def test_errors_over_grpc(stub: broker_pb2_grpc.BrokerServiceAsyncStub, key: str) -> None:
    _, code, field = ERRORS[key]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.OpenSession(broker_pb2.OpenSessionRequest(name=key))
    assert info.value.code() is code
    assert _violations(info.value) == ([] if field is None else [field])


async def test_success_passes_through(stub: broker_pb2_grpc.BrokerServiceAsyncStub) -> None:
    reply = await stub.OpenSession(broker_pb2.OpenSessionRequest(name="fine"))
    assert reply.session_id == "ok"


async def test_unexpected_exception_is_internal_and_logged(
    stub: broker_pb2_grpc.BrokerServiceAsyncStub,
) -> None:
    with structlog.testing.capture_logs() as logs, pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.OpenSession(broker_pb2.OpenSessionRequest(name="bug"))
    assert info.value.code() is grpc.StatusCode.INTERNAL
    assert "KeyError" not in (info.value.details() or "")  # internals stay in the log
    failed = [e for e in logs if e["event"] == "rpc failed unexpectedly"]
    assert failed
    assert failed[0]["method"] == "OpenSession"
    assert failed[0]["exc_info"] is True


@pytest.mark.parametrize(
    ("token", "code"),
    [("x", grpc.StatusCode.NOT_FOUND), ("bug", grpc.StatusCode.INTERNAL)],
)
async def test_stream_errors_after_items(
    stub: broker_pb2_grpc.BrokerServiceAsyncStub, token: str, code: grpc.StatusCode
) -> None:
    seen: list[int] = []

    async def read() -> None:
        async for reply in stub.StreamEvents(
            broker_pb2.StreamEventsRequest(), metadata=session_md(token)
        ):
            seen.extend(e.seq for e in reply.events)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read()
    assert seen == [1]
    assert info.value.code() is code
