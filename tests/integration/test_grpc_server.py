"""hwbkptd.api.server: health, reflection, listeners and the socket's file-system gate."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_checks import EventReader, running_daemon
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from session_metadata import session_md

from hwbkpt.v1 import broker_pb2, broker_pb2_grpc
from hwbkptd.api.listeners import ConfigError
from hwbkptd.api.server import BROKER_SERVICE, SIM_SERVICE, ServerConfig, start_server


async def _health(channel: grpc.aio.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    status: int = reply.status
    return status


async def test_health_serving(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d:
        for service in ("", BROKER_SERVICE, SIM_SERVICE):
            assert await _health(d.channel, service) == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d:
        stub = reflection_pb2_grpc.ServerReflectionStub(d.channel)
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = set()
        async for reply in call:
            names |= {s.name for s in reply.list_services_response.service}
        assert {BROKER_SERVICE, SIM_SERVICE, "grpc.health.v1.Health"} <= names
        assert BROKER_SERVICE == "hwbkpt.v1.BrokerService"

        describe = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=BROKER_SERVICE)])
        )
        files = [r.file_descriptor_response.file_descriptor_proto async for r in describe]
        assert files
        assert files[0]


async def test_socket_and_directory_modes(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d:
        path = d.address.removeprefix("unix:")
        sock, parent = os.stat(path), os.stat(os.path.dirname(path))
        assert stat.S_ISSOCK(sock.st_mode)
        assert stat.S_IMODE(sock.st_mode) == 0o660
        assert stat.S_IMODE(parent.st_mode) == 0o750
        if os.geteuid() == 0:
            assert parent.st_uid == 0
    with pytest.raises(FileNotFoundError):  # removed on stop
        os.stat(path)


async def test_stale_socket_is_replaced_live_one_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(run / "hwbkpt.sock"))
    stale.close()  # a socket file nobody listens on: what a crashed daemon leaves
    async with running_daemon(tmp_path) as d:
        stub = broker_pb2_grpc.BrokerServiceStub(d.channel)
        machine = (await stub.DescribeMachine(broker_pb2.DescribeMachineRequest())).machine
        assert machine == broker_pb2.MACHINE_KIND_SIM
        config = ServerConfig(listen=(d.address,), machine="sim")
        with pytest.raises(ConfigError, match="another server is listening"):
            await start_server(config)
        machine = (await stub.DescribeMachine(broker_pb2.DescribeMachineRequest())).machine
        assert machine == broker_pb2.MACHINE_KIND_SIM


async def test_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "not-a-socket").write_text("precious")
    config = ServerConfig(listen=(f"unix:{tmp_path}/not-a-socket",), machine="sim")
    with pytest.raises(ConfigError, match="not a socket"):
        await start_server(config)
    assert (tmp_path / "not-a-socket").read_text() == "precious"


@pytest.mark.parametrize(
    ("listen", "flag", "message"),
    [
        ("tcp:0.0.0.0:0", True, "not a loopback"),
        ("tcp:192.0.2.1:50051", True, "not a loopback"),
        ("tcp:example.com:50051", True, "not a loopback"),
        ("tcp:127.0.0.1:0", False, "--insecure-loopback-tcp"),
        ("http://127.0.0.1:80", True, "expected unix:PATH or tcp:HOST:PORT"),
    ],
)
async def test_plain_tcp_refused(listen: str, flag: bool, message: str) -> None:
    config = ServerConfig(listen=(listen,), machine="sim", insecure_loopback_tcp=flag)
    with pytest.raises(ConfigError, match=message):
        await start_server(config)


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "localhost"])
async def test_loopback_tcp_with_the_flag(tmp_path: Path, host: str) -> None:
    if host == "[::1]" and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    ready = tmp_path / "ready"
    config = ServerConfig(
        listen=(f"tcp:{host}:0",),
        machine="sim",
        insecure_loopback_tcp=True,
        ready_file=str(ready),
    )
    running = await start_server(config)
    try:
        (address,) = running.addresses
        port = int(address.rpartition(":")[2])
        assert port > 0
        assert address == f"tcp:{host}:{port}"
        assert ready.read_text() == f"{address}\n"
        async with grpc.aio.insecure_channel(f"{host}:{port}") as channel:
            stub = broker_pb2_grpc.BrokerServiceStub(channel)
            reply = await stub.DescribeMachine(broker_pb2.DescribeMachineRequest())
            assert reply.arch == "x86_64"
    finally:
        await running.stop(grace=1.0)
    assert not ready.exists()


async def test_stop_ends_event_streams_cleanly(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d:
        opened = await d.broker.OpenSession(broker_pb2.OpenSessionRequest(name="s"))
        reader = EventReader(
            d.broker.StreamEvents(
                broker_pb2.StreamEventsRequest(), metadata=session_md(opened.token)
            )
        )
        await reader.quiet(0.2)
        await d.server.stop(grace=5.0)
        # Issue 12: ended by the broker, saying why (a cut stream would say something else).
        assert await reader.end(wait=3.0) == grpc.StatusCode.UNAVAILABLE
        assert await reader.call.details() == "the broker is shutting down"


async def test_unknown_group(tmp_path: Path) -> None:
    config = ServerConfig(
        listen=(f"unix:{tmp_path}/s.sock",), machine="sim", group="no-such-group-hwbkpt"
    )
    with pytest.raises(ConfigError, match="no such group"):
        await start_server(config)


async def test_bad_machine(tmp_path: Path) -> None:
    for machine in ("vax", "sim:dr=99", "quantum"):
        config = ServerConfig(listen=(f"unix:{tmp_path}/s.sock",), machine=machine)
        with pytest.raises(ConfigError):
            await start_server(config)
