"""Issue 15, item 3 (what it must show): reflection v1 answers (hwbkptd.api.reflection),
and a client built from reflected descriptors alone calls DescribeMachine."""

from __future__ import annotations

from pathlib import Path

import grpc.aio
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_checks import running_daemon
from grpc_reflection.v1alpha import reflection_pb2

from hwbkptd.api.reflection import V1_SERVICE, V1ALPHA_SERVICE

BROKER = "hwbkpt.v1.BrokerService"


async def ask(
    channel: grpc.aio.Channel, service: str, request: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    # A raw call under the given service name: v1's messages are v1alpha's, field for field.
    method = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    return [reply async for reply in method(iter([request]))]


@pytest.mark.parametrize("service", [V1_SERVICE, V1ALPHA_SERVICE])
async def test_item3_reflection_lists_services(tmp_path: Path, service: str) -> None:
    async with running_daemon(tmp_path) as d:
        replies = await ask(
            d.channel, service, reflection_pb2.ServerReflectionRequest(list_services="")
        )
        names = {s.name for r in replies for s in r.list_services_response.service}
        assert {BROKER, "hwbkpt.v1.SimService", V1_SERVICE, V1ALPHA_SERVICE} <= names


async def test_item3_client_from_reflected_descriptors_calls_describe_machine(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as d:
        replies = await ask(
            d.channel,
            V1_SERVICE,
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=BROKER),
        )
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for r in replies
            for raw in r.file_descriptor_response.file_descriptor_proto
        ]
        assert any(f.name == "hwbkpt/v1/broker.proto" for f in files)
        # A pool of its own, filled only from what the server sent (dependencies first).
        pool = descriptor_pool.DescriptorPool()
        pending = {f.name: f for f in files}
        while pending:
            ready = [f for f in pending.values() if all(dep not in pending for dep in f.dependency)]
            assert ready, f"unresolvable dependencies in {list(pending)}"
            for f in ready:
                pool.Add(f)
                del pending[f.name]
        service = pool.FindServiceByName(BROKER)
        method = service.methods_by_name["DescribeMachine"]
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        call = d.channel.unary_unary(
            f"/{BROKER}/DescribeMachine",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        answer = await call(request_cls())
        assert answer.DESCRIPTOR.file.pool is pool
        # The enum's names come with the reflected descriptors too.
        kinds = answer.DESCRIPTOR.fields_by_name["machine"].enum_type
        assert kinds.values_by_number[answer.machine].name == "MACHINE_KIND_SIM"
        assert [p.name for p in answer.pools]


async def test_item3_reflection_describes_v1_itself(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d:
        replies = await ask(
            d.channel,
            V1_SERVICE,
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=V1_SERVICE),
        )
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for r in replies
            for raw in r.file_descriptor_response.file_descriptor_proto
        ]
        assert [(f.name, f.package) for f in files] == [
            ("grpc/reflection/v1/reflection.proto", "grpc.reflection.v1")
        ]
        assert (
            files[0].service[0].method[0].input_type
            == ".grpc.reflection.v1.ServerReflectionRequest"
        )
