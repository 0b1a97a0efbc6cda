"""Issue 9, items 11 and 12: request bytes that do not parse, against a real ``hwbkptd``.

Every method the daemon serves (found through reflection and described by its own
service descriptor, not listed here) answers INVALID_ARGUMENT to bytes that are not its
request message, also in the middle of a client stream, with one short log line each.
And a run full of such bytes, refusals and streams carrying real session tokens leaves
none of those tokens anywhere in the daemon's log.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import queue
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from e2e_support import Daemon, start_daemon
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2  # noqa: F401 - puts grpc.health.v1 in the pool
from grpc_reflection.v1alpha import reflection_pb2
from session_metadata import session_md

import hwbkpt
import hwbkpt.v1
import hwbkptd.api.reflection  # noqa: F401 - puts grpc.reflection.v1 in the pool
from hwbkpt.v1 import broker_pb2, sim_pb2

pytestmark = pytest.mark.e2e

#: These tests count one log line per refusal; the rate limit of those lines (issue 12,
#: tested in test_item12_limits) is set out of their way.
HWBKPTD_OPTIONS = {"extra": ("--refusal-log-rate", "100000", "--refusal-log-burst", "100000")}

TIMEOUT = 10.0
#: Truncated or impossible wire data, bad for every message type: a tag of wire type 6,
#: a length-delimited tag with no length, a varint that never ends, an unopened group end.
CORRUPT = (b"\x0e", b"\x0a", b"\x80", b"\x0c")


def _identity(data: bytes) -> bytes:
    return data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _bad_utf8(desc: Any, depth: int = 0) -> list[bytes]:
    """One message per string field (nested ones too) holding the bytes ``ff fe``."""
    found: list[bytes] = []
    for field in desc.fields:
        tag = _varint(field.number << 3 | 2)
        if field.type == FieldDescriptor.TYPE_STRING:
            found.append(tag + b"\x02\xff\xfe")
        elif field.type == FieldDescriptor.TYPE_MESSAGE and depth < 3:
            found += [tag + _varint(len(i)) + i for i in _bad_utf8(field.message_type, depth + 1)]
    return found


def _undecodable(method: MethodDescriptor) -> list[bytes]:
    cls = message_factory.GetMessageClass(method.input_type)
    cases = [*CORRUPT, *_bad_utf8(method.input_type)]
    for raw in cases:  # the test's own premise: the broker must not be able to read them
        with pytest.raises(Exception, match="Error parsing message"):
            cls.FromString(raw)
    return cases


def _served(channel: grpc.Channel) -> list[ServiceDescriptor]:
    list_services = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    replies = list_services(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = sorted(s.name for r in replies for s in r.list_services_response.service)
    pool = descriptor_pool.Default()
    return [pool.FindServiceByName(name) for name in names]


def _ours() -> set[str]:
    """Every service of the hwbkpt.v1 package, from its generated modules."""
    names: set[str] = set()
    for module in pkgutil.iter_modules(hwbkpt.v1.__path__):
        if module.name.endswith("_pb2"):
            pb2 = importlib.import_module(f"hwbkpt.v1.{module.name}")
            names |= {s.full_name for s in pb2.DESCRIPTOR.services_by_name.values()}
    return names


def _raw_call(channel: grpc.Channel, method: MethodDescriptor) -> Callable[..., Any]:
    path = f"/{method.containing_service.full_name}/{method.name}"
    kind = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }[(method.client_streaming, method.server_streaming)]
    callable_: Callable[..., Any] = kind(
        path, request_serializer=_identity, response_deserializer=_identity
    )
    return callable_


def _complete(
    channel: grpc.Channel, method: MethodDescriptor, request: Any, metadata: Any = None
) -> None:
    answer = _raw_call(channel, method)(request, timeout=TIMEOUT, metadata=metadata)
    if method.server_streaming:
        list(answer)


def _send_alone(
    channel: grpc.Channel, method: MethodDescriptor, raw: bytes, metadata: Any = None
) -> grpc.RpcError:
    request: Any = iter([raw]) if method.client_streaming else raw
    with pytest.raises(grpc.RpcError) as info:
        _complete(channel, method, request, metadata)
    return info.value


def _send_after_good(
    channel: grpc.Channel,
    method: MethodDescriptor,
    good: bytes,
    raw: bytes,
    metadata: Any = None,
) -> grpc.RpcError:
    """``good`` first (answered, for a bidi stream), then ``raw`` on the same stream."""
    call = _raw_call(channel, method)
    if not method.server_streaming:
        with pytest.raises(grpc.RpcError) as info:
            call(iter([good, raw]), timeout=TIMEOUT, metadata=metadata)
        return info.value
    sent: queue.Queue[bytes | None] = queue.Queue()
    responses = call(iter(sent.get, None), timeout=TIMEOUT, metadata=metadata)
    try:
        sent.put(good)
        next(responses)  # the good message was read and answered
        sent.put(raw)
        with pytest.raises(grpc.RpcError) as info:
            next(responses)
        return info.value
    finally:
        sent.put(None)
        responses.cancel()


class LogTail:
    """The daemon's log lines written since the last look."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._seen = len(daemon.log().splitlines())

    def new(self) -> list[str]:
        lines = self._daemon.log().splitlines()
        fresh, self._seen = lines[self._seen :], len(lines)
        return fresh


def _assert_refused(err: grpc.RpcError, log: LogTail, what: str) -> None:
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (what, err.code(), err.details())
    assert err.details().startswith("request: "), (what, err.details())
    lines = log.new()
    assert len(lines) == 1, (what, lines)
    assert "Traceback" not in lines[0], (what, lines)
    record = json.loads(lines[0])
    assert (record["event"], record["code"]) == ("rpc refused", "INVALID_ARGUMENT"), what
    assert "exception" not in record, (what, record)
    assert len(lines[0]) < 400, (what, lines[0])


def test_item11_undecodable_bytes_are_invalid_argument_on_every_method(daemon: Daemon) -> None:
    with grpc.insecure_channel(daemon.address) as channel:
        services = _served(channel)
        served = {s.full_name for s in services}
        assert _ours() <= served
        assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= served
        log = LogTail(daemon)
        streams = 0
        for service in services:
            for method in service.methods:
                for raw in _undecodable(method):
                    what = f"{method.full_name} {raw.hex()}"
                    _assert_refused(_send_alone(channel, method, raw), log, what)
                    if method.client_streaming:
                        streams += 1
                        err = _send_after_good(channel, method, b"", raw)
                        _assert_refused(err, log, f"{what} after a good message")
        assert streams > 0  # ResumeThreadsStream and the reflection stream at least
        # Still serving, and nothing more was logged meanwhile.
        with daemon.client() as client:
            assert client.describe().machine == "sim"
    assert daemon.proc.poll() is None
    assert log.new() == []


# --- item 12 -----------------------------------------------------------------------------
def _token_methods() -> list[MethodDescriptor]:
    """Every broker method of a session: its request once had the token field, now
    reserved (issue 12: the token travels in call metadata)."""
    service = broker_pb2.DESCRIPTOR.services_by_name["BrokerService"]
    out = []
    for m in service.methods:
        proto = descriptor_pb2.DescriptorProto()
        m.input_type.CopyToProto(proto)
        if "token" in proto.reserved_name:
            out.append(m)
    assert len(out) >= 12, [m.name for m in out]
    return out


def _unreadable(method: MethodDescriptor) -> list[bytes]:
    """Requests of ``method`` that do not parse."""
    cls = message_factory.GetMessageClass(method.input_type)
    for raw in CORRUPT:
        with pytest.raises(Exception, match="Error parsing message"):
            cls.FromString(raw)
    return list(CORRUPT)


@pytest.fixture
def own_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon of this test alone, so its whole log is this test's run."""
    d = start_daemon(tmp_path, **HWBKPTD_OPTIONS)
    yield d
    d.stop()


def test_item12_no_session_token_reaches_the_log(own_daemon: Daemon) -> None:
    daemon = own_daemon
    pid, tids = daemon.spawn(threads=2)
    broker_methods = broker_pb2.DESCRIPTOR.services_by_name["BrokerService"].methods_by_name
    resume_stream = broker_methods["ResumeThreadsStream"]
    resume_threads = broker_methods["ResumeThreads"]
    tokens: list[str] = []
    refused = 0
    with daemon.client() as client, grpc.insecure_channel(daemon.address) as channel:
        touch = channel.unary_unary(
            "/hwbkpt.v1.SimService/Touch",
            request_serializer=sim_pb2.TouchRequest.SerializeToString,
            response_deserializer=sim_pb2.TouchResponse.FromString,
        )
        sessions = [client.open_session(f"fuzz-{i}") for i in range(4)]
        tokens += [s.token for s in sessions]
        for i, session in enumerate(sessions):
            address = 0x601000 + 8 * i
            session.watch(address, pid=pid, halt=True)
            hit = touch(
                sim_pb2.TouchRequest(
                    pid=pid,
                    tid=tids[0],
                    address=address,
                    access=broker_pb2.ACCESS_WRITE,
                    value=b"\x01",
                )
            )
            assert hit.halted
            # A stream whose earlier message carried the token (and resumed the thread the
            # session halted), then bytes that do not parse.
            secret = session_md(session.token)
            for n, raw in enumerate(CORRUPT):
                good = broker_pb2.ResumeThreadsStreamRequest(
                    tids=[tids[0]] if n == 0 else []
                ).SerializeToString()
                _send_after_good(channel, resume_stream, good, raw, secret)
                refused += 1
            # Every method of a session, with the token, sent a request that does not parse.
            for method in _token_methods():
                for raw in _unreadable(method):
                    _send_alone(channel, method, raw, secret)
                    refused += 1
            # Requests that parse but fail, with a real token in them.
            for call_fails in (
                partial(session.watch, address, pid=pid, length=0),
                partial(session.remove, 987654),
                partial(session.modify, 987654, priority=5),
            ):
                with pytest.raises(hwbkpt.HwbkptError):
                    call_fails()
                refused += 1
            unresumable = broker_pb2.ResumeThreadsRequest(tids=[999999])
            _send_alone(channel, resume_threads, unresumable.SerializeToString(), secret)
            refused += 1
            # The library resumes on ResumeThreadsStream: refused in an answer, not logged.
            with pytest.raises(hwbkpt.HwbkptError):
                session.resume_threads([999999])
        client.resume_session(sessions[0].token).close()
    assert daemon.stop() == 0
    text = daemon.log()
    leaked = [t for t in tokens if t in text]
    assert len(leaked) == 0, f"{len(leaked)} of {len(tokens)} session tokens in the log"
    # Not passing for want of trying: every error of the run reached the log, as a refusal.
    assert text.count('"rpc refused"') >= refused
