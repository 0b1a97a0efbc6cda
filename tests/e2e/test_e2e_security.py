"""Issue 12 (identities): who a caller is and what it may do, against a real ``hwbkptd``.

Items 1 (authentication on TLS, tokens and client certificates), 3 (sessions belong to
identities), 4 (the socket's location) and 6 (SIGHUP reload). Item 2 on real processes
is in tests/e2e_native/test_e2e_native_policy.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from e2e_support import HWBKPTD, Daemon
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pki import make_pki
from security_support import POLICY, Secured, start_secured
from session_metadata import session_md

import hwbkpt
from hwbkpt.aio import AsyncClient
from hwbkpt.v1 import broker_pb2, broker_pb2_grpc, sim_pb2

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0


def _channel(s: Secured) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(s.pki.ca.read_bytes())
    return grpc.secure_channel(s.tcp.removeprefix("tcp:"), creds)


def _bearer(s: Secured, who: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {s.tokens[who].read_text().strip()}"),)


def _every_method() -> list[MethodDescriptor]:
    return [
        m
        for file in (broker_pb2.DESCRIPTOR, sim_pb2.DESCRIPTOR)
        for service in file.services_by_name.values()
        for m in service.methods
    ]


def _raw(channel: grpc.Channel, method: MethodDescriptor, metadata: Any) -> grpc.StatusCode:
    path = f"/{method.containing_service.full_name}/{method.name}"
    kind = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }[(method.client_streaming, method.server_streaming)]
    call = kind(path)
    request: Any = iter([b""]) if method.client_streaming else b""
    try:
        answer = call(request, timeout=TIMEOUT, metadata=metadata)
        if method.server_streaming:
            list(answer)
    except grpc.RpcError as err:
        code: grpc.StatusCode = err.code()
        return code
    return grpc.StatusCode.OK


# --- item 1 --------------------------------------------------------------------------------
def test_item1_no_credentials_is_unauthenticated_on_every_method(secured: Secured) -> None:
    methods = _every_method()
    assert "StreamEvents" in {m.name for m in methods}
    with _channel(secured) as channel:
        codes = {m.name: _raw(channel, m, None) for m in methods}
        unknown = {m.name: _raw(channel, m, (("authorization", "Bearer nope"),)) for m in methods}
        # Health stays open.
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert set(codes.values()) == {grpc.StatusCode.UNAUTHENTICATED}, codes
    assert set(unknown.values()) == {grpc.StatusCode.UNAUTHENTICATED}, unknown
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    log = secured.daemon.log()
    assert '"outcome": "UNAUTHENTICATED"' in log
    assert '"peer": "ipv4:127.0.0.1:' in log


def test_item1_a_valid_token_works(secured: Secured) -> None:
    pid, _ = secured.daemon.spawn()  # on the trusted local socket
    with secured.client("bob") as client, client.open_session("bob-s") as session:
        assert client.describe().machine == "sim"
        bp = session.watch(0x601000, pid=pid)
        assert [b.id for b in session.list()] == [bp.id]
    log = [json.loads(line) for line in secured.daemon.log().splitlines() if line.startswith("{")]
    audit = [
        r
        for r in log
        if r.get("event") == "audit" and r.get("method", "").endswith("SetBreakpoint")
    ]
    assert audit
    assert audit[-1]["identity"] == "bob"
    assert audit[-1]["via"] == "token"
    assert audit[-1]["outcome"] == "OK"


def test_item1_certificates_current_expired_and_unknown(tmp_path: Path) -> None:
    s = start_secured(tmp_path, mtls=True)
    try:
        pki = s.pki
        good = pki.issue("alice", "alice")
        by_san = pki.issue("bob-san", "not-this-name", san="DNS:bob")
        expired = pki.issue("old", "alice", days=-1)
        stranger = make_pki(tmp_path / "other", "other").issue("mallory", "alice")
        ca = str(pki.ca)

        def client(pair: tuple[Path, Path] | None) -> hwbkpt.Client:
            cert, key = (str(pair[0]), str(pair[1])) if pair else (None, None)
            return hwbkpt.Client(s.tcp, ca=ca, cert=cert, key=key, timeout=5)

        with client(good) as c, c.open_session("alice-s"):
            assert c.describe().machine == "sim"
        with client(by_san) as c, c.open_session("bob-s"):
            pass
        for refused in (expired, stranger, None):
            with client(refused) as c, pytest.raises(hwbkpt.HwbkptError) as info:
                c.describe()
            # The TLS handshake fails: the broker never serves such a caller.
            assert info.value.code == "UNAVAILABLE", (refused, info.value)
        opened = [
            json.loads(line)
            for line in s.daemon.log().splitlines()
            if 'BrokerService/OpenSession"' in line and '"audit"' in line
        ]
        assert [(r["identity"], r["via"]) for r in opened] == [
            ("alice", "certificate"),
            ("bob", "certificate"),
        ]
    finally:
        assert s.daemon.stop() == 0


# --- item 3 --------------------------------------------------------------------------------
def test_item3_another_identity_cannot_see_change_remove_or_resume(secured: Secured) -> None:
    d = secured.daemon
    pid, _ = d.spawn()
    with secured.client("alice") as alice_client:
        alice = alice_client.open_session("alice-s")
        bp = alice.watch(0x601000, pid=pid, halt=True)
        hit = d.cli_json("sim", "touch", "--pid", str(pid), "0x601000", "--value", "7")
        assert hit[0]["halted"], hit
        before = [b.id for b in alice.list()]
        stolen = alice.token  # bob holds alice's secret, her session id and bp ids
        with _channel(secured) as channel:
            stub = broker_pb2_grpc.BrokerServiceStub(channel)
            as_bob = _bearer(secured, "bob") + session_md(stolen)
            calls = {
                "ListBreakpoints": lambda: stub.ListBreakpoints(
                    broker_pb2.ListBreakpointsRequest(), metadata=as_bob
                ),
                "StreamEvents": lambda: list(
                    stub.StreamEvents(broker_pb2.StreamEventsRequest(), metadata=as_bob)
                ),
                "ModifyBreakpoint": lambda: stub.ModifyBreakpoint(
                    broker_pb2.ModifyBreakpointRequest(breakpoint_id=bp.id, priority=5),
                    metadata=as_bob,
                ),
                "RemoveBreakpoint": lambda: stub.RemoveBreakpoint(
                    broker_pb2.RemoveBreakpointRequest(breakpoint_id=bp.id), metadata=as_bob
                ),
                "ResumeThreads": lambda: stub.ResumeThreads(
                    broker_pb2.ResumeThreadsRequest(), metadata=as_bob
                ),
                "ResumeSession": lambda: stub.ResumeSession(
                    broker_pb2.ResumeSessionRequest(), metadata=as_bob
                ),
                "CloseSession": lambda: stub.CloseSession(
                    broker_pb2.CloseSessionRequest(), metadata=as_bob
                ),
            }
            for name, call in calls.items():
                with pytest.raises(grpc.RpcError) as info:
                    call()
                # The answer an unknown secret gets, word for word: nothing to learn.
                assert info.value.code() is grpc.StatusCode.NOT_FOUND, name
                assert info.value.details() == "no such session", name
            # Bob's own session, naming alice's breakpoint: not found, her session unnamed.
            with secured.client("bob") as bob_client, bob_client.open_session("bob-s") as bob:
                for change in (lambda: bob.remove(bp.id), lambda: bob.modify(bp.id, priority=5)):
                    with pytest.raises(hwbkpt.HwbkptError) as err:
                        change()
                    assert err.value.code == "NOT_FOUND"
                    assert "alice" not in str(err.value)
                shown = bob_client.slot_map(pid)
                names = {h.session_name for t in shown.threads for s in t.slots for h in s.holders}
                assert names == {"(other)"}, shown
        # Alice's state is what it was: her request, her halted thread, her session.
        assert [b.id for b in alice.list()] == before
        assert alice.resume_threads() == (pid,)
        names = {
            h.session_name
            for t in alice_client.slot_map(pid).threads
            for s in t.slots
            for h in s.holders
        }
        assert names == {"alice-s"}
        alice.close()


# --- item 4 --------------------------------------------------------------------------------
def _refused_start(tmp_path: Path, sock: Path, ready: Path | None = None) -> str:
    argv = [str(HWBKPTD), "--listen", f"unix:{sock}", "--machine", "sim"]
    if ready is not None:
        argv += ["--ready-file", str(ready)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    return done.stderr


def test_item4_world_writable_socket_directory_refuses_start(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    err = _refused_start(tmp_path, shared / "hwbkpt.sock")
    assert f"{shared} is writable by others" in err, err
    # A level above, writable by others without the sticky bit, is refused too.
    deep = shared / "run"
    deep.mkdir(mode=0o750)
    err = _refused_start(tmp_path, deep / "hwbkpt.sock")
    assert f"{shared} is writable by others without the sticky bit" in err, err
    assert not (deep / "hwbkpt.sock").exists()


def test_item4_symlinked_socket_location_refuses_start(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o750)
    (tmp_path / "link").symlink_to(real)
    err = _refused_start(tmp_path, tmp_path / "link" / "hwbkpt.sock")
    assert f"{tmp_path / 'link'} is a symbolic link" in err, err
    (real / "hwbkpt.sock").symlink_to(tmp_path / "elsewhere.sock")
    err = _refused_start(tmp_path, real / "hwbkpt.sock")
    assert "it is a symbolic link" in err, err


def test_item4_missing_levels_are_created_0750_and_the_ready_file_follows_no_link(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    ready = tmp_path / "ready"
    ready.symlink_to(victim)
    sock = tmp_path / "a" / "b" / "hwbkpt.sock"
    proc = subprocess.Popen(
        [str(HWBKPTD), "--listen", f"unix:{sock}", "--machine", "sim", "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while ready.is_symlink() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not ready.is_symlink()
        assert ready.read_text() == f"unix:{sock}\n"
        assert victim.read_text() == "keep me\n"
        for level in (tmp_path / "a", tmp_path / "a" / "b"):
            assert os.stat(level).st_mode & 0o777 == 0o750, level
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


# --- item 6 --------------------------------------------------------------------------------
def _wait_for_log(d: Daemon, text: str, count: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while d.log().count(text) < count:
        assert time.monotonic() < deadline, f"no {count}x {text!r} in\n{d.log()[-3000:]}"
        time.sleep(0.05)


def test_item6_sighup_reload_applies_to_new_calls_and_keeps_allowed_sessions(
    secured: Secured,
) -> None:
    d = secured.daemon
    pid, _ = d.spawn()
    with secured.client("carol") as carol_c, secured.client("bob") as bob_c:
        carol = carol_c.open_session("carol-s")
        carol.watch(0x601000, pid=pid, priority=50)
        bob = bob_c.open_session("bob-s")
        bob.watch(0x601008, pid=pid)
        with pytest.raises(hwbkpt.HwbkptError) as err:
            carol.watch(0x601010, pid=pid, priority=75)
        assert err.value.code == "PERMISSION_DENIED"
        # carol may now go to 75; bob is no longer in the policy.
        new = POLICY.replace("max_priority = 50", "max_priority = 75").replace(
            "[identities.bob]\nany_process = true\n", ""
        )
        secured.policy.write_text(new)
        d.proc.send_signal(signal.SIGHUP)
        _wait_for_log(d, '"method": "policy_reload", "outcome": "OK"', 1)
        high = carol.watch(0x601010, pid=pid, priority=75)  # a new call: the new rules
        assert len(carol.list()) == 2  # her session stayed, with its request
        with pytest.raises(hwbkpt.HwbkptError) as err:
            bob.list()
        assert err.value.code == "PERMISSION_DENIED", err.value
        shown = carol_c.slot_map(pid)
        assert {h.breakpoint_id for t in shown.threads for s in t.slots for h in s.holders} == {
            b.id for b in carol.list()
        }  # bob's session ended with the reload, its request gone
        # A broken file is refused whole; the rules in force stay.
        secured.policy.write_text("[identities.carol]\nmax_priority = 'high'\n")
        d.proc.send_signal(signal.SIGHUP)
        _wait_for_log(d, '"method": "policy_reload", "outcome": "REFUSED"', 1)
        assert "identities.carol.max_priority: must be a int" in d.log()
        carol.modify(high.id, priority=70)
        assert {b.priority for b in carol.list()} == {50, 70}
        carol.close()


def test_item6_check_policy(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(POLICY)
    done = subprocess.run(
        [str(HWBKPTD), "--check-policy", str(good)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "valid, 3 identities" in done.stdout
    assert "carol: targets any process; kernel no; priority <= 50; halt no" in done.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[identities.x]\nuids = [-1]\n")
    done = subprocess.run(
        [str(HWBKPTD), "--check-policy", str(bad)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "identities.x.uids: -1 is not a whole number of at least 0" in done.stderr


def test_item1_the_async_client_takes_the_same_credentials(secured: Secured) -> None:
    async def run() -> tuple[str, list[int]]:
        async with AsyncClient(
            secured.tcp, ca=str(secured.pki.ca), token_file=str(secured.tokens["alice"])
        ) as client:
            session = await client.open_session("alice-aio")
            machine = (await client.describe()).machine
            ids = [b.id for b in await session.list()]
            await session.close()
        async with AsyncClient(secured.tcp, ca=str(secured.pki.ca), timeout=5) as anonymous:
            with pytest.raises(hwbkpt.HwbkptError) as info:
                await anonymous.describe()
            assert info.value.code == "UNAUTHENTICATED"
        return machine, ids

    assert asyncio.run(run()) == ("sim", [])
