"""Build and run the grpc.aio server: the broker and sim services, health and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import grpc.aio
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client.registry import CollectorRegistry

from hwbkpt.v1 import broker_pb2, broker_pb2_grpc, sim_pb2, sim_pb2_grpc
from hwbkptd.api.admission import AdmitCalls
from hwbkptd.api.broker_service import BrokerService
from hwbkptd.api.decoding import RejectUndecodable
from hwbkptd.api.gate import Authenticate, Gate
from hwbkptd.api.listeners import (
    DEFAULT_LISTEN,
    ConfigError,
    Listener,
    finish_unix_socket,
    parse_listener,
    prepare_unix_socket,
    resolve_group,
    socket_umask,
)
from hwbkptd.api.reflection import enable_reflection
from hwbkptd.api.sim_service import SimService
from hwbkptd.api.socket_dir import write_ready_file
from hwbkptd.api.status import limit_refusal_log
from hwbkptd.core.broker import Broker, BrokerConfig
from hwbkptd.core.limits import Limits
from hwbkptd.daemon.access import AccessFiles, load_rules, reload_rules, tls_credentials
from hwbkptd.daemon.machines import Machine, MachineError, build_machine
from hwbkptd.daemon.metrics import BrokerMetrics, MetricsCollector
from hwbkptd.daemon.metrics_http import MetricsServer, start_metrics

__all__ = [
    "BROKER_SERVICE",
    "MAX_RECEIVE_BYTES",
    "SIM_SERVICE",
    "HealthStatus",
    "RunningServer",
    "ServerConfig",
    "serve",
    "start_server",
]

BROKER_SERVICE: str = broker_pb2.DESCRIPTOR.services_by_name["BrokerService"].full_name
SIM_SERVICE: str = sim_pb2.DESCRIPTOR.services_by_name["SimService"].full_name

#: gRPC's default 4 MiB receive limit would answer an oversized message with
#: RESOURCE_EXHAUSTED before the broker sees it. 16 MiB (the default of
#: ``Limits.max_message_bytes``, flag --max-message-bytes) lets the broker read, say,
#: a 10 MB session name and answer what is actually wrong (INVALID_ARGUMENT
#: "name"), while still bounding what one call can make the daemon hold.
MAX_RECEIVE_BYTES = Limits().max_message_bytes


def _options(limits: Limits) -> tuple[tuple[str, int], ...]:
    return (
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        # With SO_REUSEPORT (grpc's default on Linux) a second daemon could bind the
        # same TCP port and take half the connections; fail to start instead.
        ("grpc.so_reuseport", 0),
    )


_log = structlog.get_logger("hwbkptd")

# grpc_health-stubs (1.53) predate the asyncio health servicer, so it is untyped here.
_AioHealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]


class HealthStatus(Protocol):
    """What the daemon uses of grpc_health's asyncio servicer."""

    async def set(self, service: str, status: int) -> None: ...

    async def enter_graceful_shutdown(self) -> None: ...


@dataclass(frozen=True)
class ServerConfig:
    listen: Sequence[str] = (DEFAULT_LISTEN,)
    machine: str = "auto"
    arming: str = "auto"
    lease_seconds: float = 15.0
    hit_buffer: int = 4096
    halt_timeout_seconds: float = 30.0
    #: The operators' group owning the socket directory; None: root's group.
    group: str | None = None
    insecure_loopback_tcp: bool = False
    #: Written with the bound addresses, one per line, once the server is serving.
    ready_file: str | None = None
    #: Put user hits in words (issue 13); off only to measure what it costs (bench/names).
    hit_words: bool = True
    grace_seconds: float = 5.0
    #: ``tcp:HOST:PORT`` for Prometheus metrics (daemon/metrics.py); None: no metrics.
    metrics: str | None = None
    #: Quotas, sizes and the memory budget (core/limits.py).
    limits: Limits = Limits()  # noqa: RUF009 - Limits is a frozen dataclass
    #: The policy, token file and TLS material (DESIGN section 7); none: local socket only.
    access: AccessFiles = field(default_factory=AccessFiles)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    broker: Broker
    machine: Machine
    health: HealthStatus
    #: The bound addresses as ``unix:PATH`` / ``tcp:HOST:PORT`` (real ports).
    addresses: tuple[str, ...]
    config: ServerConfig
    gate: Gate
    _unix_paths: tuple[str, ...] = ()
    _stopped: bool = False
    #: The metrics endpoint, when ``config.metrics`` asked for one.
    metrics: MetricsServer | None = None

    async def reload(self) -> bool:
        """Read the access files again (SIGHUP); False when they were refused."""
        old = self.gate.rules
        self.gate.rules = await reload_rules(self.config.access, old, self.broker)
        return self.gate.rules is not old

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, end the event streams, release everything; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.config.grace_seconds if grace is None else grace
        _log.info("hwbkptd: stopping", grace_seconds=grace)
        await self.health.enter_graceful_shutdown()
        # server.stop refuses new calls at once and waits for running ones; the
        # broker ends every event stream, so streaming calls finish within the grace.
        stopping = asyncio.ensure_future(self.server.stop(grace))
        await asyncio.sleep(0)
        try:
            await self.broker.stop()
        except Exception:
            _log.exception("broker stop failed")
        await stopping
        if self.metrics is not None:
            await self.metrics.close()
        for path in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if self.config.ready_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.ready_file)
        _log.info("hwbkptd: stopped")


def _write_ready_file(path: str, addresses: Sequence[str]) -> None:
    # Whole at once (a waiting test or demo never reads half a file), through no link.
    write_ready_file(path, "".join(f"{a}\n" for a in addresses))


def _bind(
    server: grpc.aio.Server,
    listeners: Sequence[Listener],
    gid: int,
    tls: grpc.ServerCredentials | None,
) -> list[str]:
    bound: list[str] = []
    for listener in listeners:
        if listener.kind == "unix":
            prepare_unix_socket(listener, gid)
        try:
            with socket_umask():
                if listener.kind == "tls" and tls is not None:
                    port = server.add_secure_port(listener.grpc_address, tls)
                else:
                    port = server.add_insecure_port(listener.grpc_address)
        except RuntimeError as err:
            raise ConfigError(f"cannot listen on {listener.bound(listener.port)}: {err}") from None
        if port == 0 and listener.kind != "unix":
            raise ConfigError(f"cannot listen on {listener.bound(listener.port)}")
        if listener.kind == "unix":
            finish_unix_socket(listener, gid)
        bound.append(listener.bound(port))
    return bound


async def _start_metrics(
    config: ServerConfig, broker: Broker, machine: Machine
) -> MetricsServer | None:
    """The Prometheus endpoint, counting from the broker's activity feed from now on."""
    if not config.metrics:
        return None
    counts = BrokerMetrics()
    broker.activity.subscribe(counts)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(counts, broker.slot_map, list(machine.pools)))
    return await start_metrics(config.metrics, registry)


async def start_server(config: ServerConfig, machine: Machine | None = None) -> RunningServer:
    """Start the broker and serve it; raises ConfigError before serving anything on bad input."""
    rules = load_rules(config.access)
    tls = tls_credentials(config.access, rules)
    listeners = [
        parse_listener(
            text, insecure_loopback_tcp=config.insecure_loopback_tcp, tls=tls is not None
        )
        for text in (config.listen or (DEFAULT_LISTEN,))
    ]
    gid = resolve_group(config.group)
    if machine is None:
        try:
            machine = build_machine(config.machine, config.arming)
        except MachineError as err:
            raise ConfigError(str(err)) from None
    broker = Broker(
        arch=machine.arch,
        pools=machine.pools,
        mechanism=machine.mechanism,
        config=BrokerConfig(
            machine=machine.machine,
            lease_seconds=config.lease_seconds,
            hit_buffer=config.hit_buffer,
            halt_timeout_seconds=config.halt_timeout_seconds,
            limits=config.limits,
            extra_mechanisms=machine.unavailable,
            hit_words=config.hit_words,
        ),
        hooks=machine.hooks,
    )
    await broker.start()
    try:
        metrics = await _start_metrics(config, broker, machine)
    except BaseException:
        await broker.stop()
        raise
    limit_refusal_log(config.limits.refusal_log_per_second, config.limits.refusal_log_burst)
    gate = Gate(rules)
    # The gate first: a caller without credentials learns nothing, not even that its
    # bytes did not parse; admission (quotas per identity) needs the identity it sets.
    server = grpc.aio.server(
        options=_options(config.limits),
        interceptors=(Authenticate(gate), RejectUndecodable(), AdmitCalls(broker.quotas)),
    )
    broker_pb2_grpc.add_BrokerServiceServicer_to_server(BrokerService(broker), server)
    sim_pb2_grpc.add_SimServiceServicer_to_server(SimService(broker, machine.sim), server)
    health_servicer: HealthStatus = _AioHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection((BROKER_SERVICE, SIM_SERVICE, health.SERVICE_NAME), server)
    try:
        addresses = _bind(server, listeners, gid, tls)
        await server.start()
    except BaseException:
        await server.stop(None)
        await broker.stop()
        if metrics is not None:
            await metrics.close()
        raise
    serving = health_pb2.HealthCheckResponse.SERVING
    await health_servicer.set("", serving)
    await health_servicer.set(BROKER_SERVICE, serving)
    await health_servicer.set(
        SIM_SERVICE,
        serving if machine.sim is not None else health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    running = RunningServer(
        server=server,
        broker=broker,
        machine=machine,
        health=health_servicer,
        addresses=tuple(addresses),
        config=config,
        gate=gate,
        _unix_paths=tuple(lst.host_or_path for lst in listeners if lst.kind == "unix"),
        metrics=metrics,
    )
    _log.info(
        f"hwbkptd: listening on {', '.join(addresses)}, "
        f"machine {machine.machine} ({machine.reason})",
        listen=list(addresses),
        machine=machine.machine,
        reason=machine.reason,
        pid=os.getpid(),
        metrics=metrics.address if metrics is not None else None,
    )
    if config.ready_file:
        _write_ready_file(config.ready_file, addresses)
    return running


async def serve(config: ServerConfig, machine: Machine | None = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    # The handlers come before the start: a signal sent as soon as the ready file exists
    # (or during the start) must stop the broker cleanly, not kill it by default action
    # with targets attached and its socket left behind.
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[bool]] = set()
    running: RunningServer | None = None
    hangup_while_starting = False

    def reload() -> None:
        nonlocal hangup_while_starting
        if running is None:
            hangup_while_starting = True  # the files may change after the start read them
            return
        task = asyncio.ensure_future(running.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        try:
            running = await start_server(config, machine)
            if hangup_while_starting:
                reload()
            await stop.wait()
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            # The handlers stay while shutting down, so a second signal cannot kill the
            # daemon halfway through releasing what it holds.
            if running is not None:
                await running.stop()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
