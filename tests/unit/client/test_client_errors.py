"""hwbkpt.errors: gRPC failures become HwbkptError with code, message and faulty fields.

A real gRPC server in this process answers with rich statuses; the clients call it over a
real Unix socket.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from hwbkpt import AsyncClient, Client, HwbkptError
from hwbkpt.errors import FieldViolation, from_status_bytes
from hwbkpt.v1 import broker_pb2 as pb


def _describe(
    request: pb.DescribeMachineRequest, context: grpc.ServicerContext
) -> pb.DescribeMachineResponse:
    """A BadRequest naming two fields."""
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field="spec.length", description="must be 1..32"
            ),
            error_details_pb2.BadRequest.FieldViolation(
                field="spec.address", description="not aligned"
            ),
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(bad)
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message="spec.length: must be 1..32", details=[detail]
    )
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort returns by raising")


def _slot_map(
    request: pb.GetSlotMapRequest, context: grpc.ServicerContext
) -> pb.GetSlotMapResponse:
    """A bare status, without details."""
    context.abort(grpc.StatusCode.NOT_FOUND, f"pid {request.pid}: no such process")
    raise AssertionError("abort returns by raising")


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sock: Path = tmp_path_factory.mktemp("errors") / "s.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handlers = {
        "DescribeMachine": grpc.unary_unary_rpc_method_handler(
            _describe,
            request_deserializer=pb.DescribeMachineRequest.FromString,
            response_serializer=pb.DescribeMachineResponse.SerializeToString,
        ),
        "GetSlotMap": grpc.unary_unary_rpc_method_handler(
            _slot_map,
            request_deserializer=pb.GetSlotMapRequest.FromString,
            response_serializer=pb.GetSlotMapResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("hwbkpt.v1.BrokerService", handlers),)
    )
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    yield f"unix:{sock}"
    server.stop(None)


_VIOLATIONS = (
    FieldViolation("spec.length", "must be 1..32"),
    FieldViolation("spec.address", "not aligned"),
)


def test_bad_request_fields_sync(address: str) -> None:
    with Client(address) as client, pytest.raises(HwbkptError) as info:
        client.describe()
    err = info.value
    assert err.code == "INVALID_ARGUMENT"
    assert err.status_code is grpc.StatusCode.INVALID_ARGUMENT
    assert err.message == "spec.length: must be 1..32"
    assert str(err) == "INVALID_ARGUMENT: spec.length: must be 1..32"
    assert err.field_violations == _VIOLATIONS
    assert err.fields == ("spec.length", "spec.address")


async def test_bad_request_fields_async(address: str) -> None:
    async with AsyncClient(address) as client:
        with pytest.raises(HwbkptError) as info:
            await client.describe()
    assert info.value.code == "INVALID_ARGUMENT"
    assert info.value.field_violations == _VIOLATIONS


def test_plain_status_has_no_fields(address: str) -> None:
    with Client(address) as client, pytest.raises(HwbkptError) as info:
        client.slot_map(pid=77)
    assert (info.value.code, info.value.message) == ("NOT_FOUND", "pid 77: no such process")
    assert info.value.field_violations == ()


def test_unreachable_broker_is_unavailable(tmp_path: Path) -> None:
    client = Client(f"unix:{tmp_path}/nobody.sock", timeout=5)
    with client, pytest.raises(HwbkptError) as info:
        client.describe()
    assert info.value.code == "UNAVAILABLE"
    assert info.value.field_violations == ()


def test_unknown_code_name_has_no_status_code() -> None:
    assert HwbkptError("LOCAL", "x").status_code is None


def test_a_status_sent_in_a_message_reads_like_a_failed_call() -> None:
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="tids", description="not halted")
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(bad)
    status = status_pb2.Status(
        code=code_pb2.FAILED_PRECONDITION, message="thread 7 is not halted", details=[detail]
    )
    err = from_status_bytes(status.SerializeToString())
    assert (err.code, err.message) == ("FAILED_PRECONDITION", "thread 7 is not halted")
    assert err.field_violations == (FieldViolation("tids", "not halted"),)
    assert from_status_bytes(status_pb2.Status(code=999).SerializeToString()).code == "UNKNOWN"
    assert from_status_bytes(b"\xff\xff").code == "UNKNOWN"
