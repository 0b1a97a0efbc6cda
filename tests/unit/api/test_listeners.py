"""hwbkptd.api.listeners: listen addresses, and the directory and socket the daemon prepares."""

from __future__ import annotations

import os
import pwd
import socket
import stat
from pathlib import Path

import pytest

from hwbkptd.api.listeners import (
    ConfigError,
    Listener,
    finish_unix_socket,
    parse_listener,
    prepare_unix_socket,
    resolve_group,
    socket_umask,
)


@pytest.mark.parametrize(
    ("text", "expected", "grpc_address"),
    [
        ("unix:/run/hwbkpt/hwbkpt.sock", Listener("unix", "/run/hwbkpt/hwbkpt.sock"), None),
        ("tcp:127.0.0.1:0", Listener("tcp", "127.0.0.1", 0), "127.0.0.1:0"),
        ("tcp:127.5.6.7:9", Listener("tcp", "127.5.6.7", 9), "127.5.6.7:9"),
        ("tcp:[::1]:50051", Listener("tcp", "::1", 50051), "[::1]:50051"),
        ("tcp:localhost:65535", Listener("tcp", "localhost", 65535), "localhost:65535"),
    ],
)
def test_parse(text: str, expected: Listener, grpc_address: str | None) -> None:
    listener = parse_listener(text, insecure_loopback_tcp=True)
    assert listener == expected
    assert listener.grpc_address == (grpc_address or text)


def test_relative_unix_path_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_listener("unix:x.sock", insecure_loopback_tcp=False).host_or_path == str(
        tmp_path / "x.sock"
    )


def test_bound_reports_the_real_port() -> None:
    assert Listener("tcp", "::1", 0).bound(4242) == "tcp:[::1]:4242"
    assert Listener("unix", "/a/b").bound(1) == "unix:/a/b"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tcp:10.0.0.1:1", "not a loopback"),
        ("tcp:0.0.0.0:1", "not a loopback"),
        ("tcp:[::]:1", "not a loopback"),
        ("tcp:host.example:1", "not a loopback"),
        ("tcp:127.0.0.1:65536", "port 0..65535"),
        ("tcp:127.0.0.1:http", "port 0..65535"),
        ("tcp:127.0.0.1", "tcp:HOST:PORT"),
        ("unix:", "empty"),
        ("unix:/" + "x" * 200, "at most 107 bytes"),
        ("/run/hwbkpt.sock", "expected unix:PATH"),
        ("dns:localhost:1", "expected unix:PATH"),
    ],
)
def test_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_listener(text, insecure_loopback_tcp=True)


def test_loopback_tcp_needs_the_flag() -> None:
    with pytest.raises(ConfigError, match="--insecure-loopback-tcp"):
        parse_listener("tcp:127.0.0.1:1", insecure_loopback_tcp=False)


def test_groups() -> None:
    assert resolve_group(None) == pwd.getpwuid(0).pw_gid
    assert resolve_group("root") == 0
    assert resolve_group("4242") == 4242
    with pytest.raises(ConfigError, match="no such group"):
        resolve_group("no-such-group-hwbkpt")


def test_prepare_creates_the_directory(tmp_path: Path) -> None:
    listener = Listener("unix", str(tmp_path / "a" / "b" / "s.sock"))
    prepare_unix_socket(listener, 0)
    made = (tmp_path / "a" / "b").stat()
    assert stat.S_IMODE(made.st_mode) == 0o750
    if os.geteuid() == 0:
        assert (made.st_uid, made.st_gid) == (0, 0)


def test_existing_directory_is_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    prepare_unix_socket(Listener("unix", str(tmp_path / "s.sock")), 0)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_stale_socket_is_removed_live_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    listener = Listener("unix", str(path))
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        with pytest.raises(ConfigError, match="another server"):
            prepare_unix_socket(listener, 0)
        assert path.exists()
    prepare_unix_socket(listener, 0)  # closed now: stale
    assert not path.exists()


def test_other_files_are_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("keep")
    with pytest.raises(ConfigError, match="not a socket"):
        prepare_unix_socket(Listener("unix", str(path)), 0)
    assert path.read_text() == "keep"


def test_socket_is_born_0660_and_finished_with_the_group(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket_umask(), socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        finish_unix_socket(Listener("unix", str(path)), 4242)
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o660
        if os.geteuid() == 0:
            assert (info.st_uid, info.st_gid) == (0, 4242)
