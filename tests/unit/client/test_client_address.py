"""hwbkpt._address: user addresses to gRPC targets, and the default from the environment."""

from __future__ import annotations

import pytest

from hwbkpt._address import DEFAULT_ADDRESS, ENV_VAR, default_address, grpc_target


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("unix:/run/hwbkpt/hwbkpt.sock", "unix:/run/hwbkpt/hwbkpt.sock"),
        ("unix:relative.sock", "unix:relative.sock"),
        ("unix:///abs/path.sock", "unix:///abs/path.sock"),
        ("tcp:127.0.0.1:7000", "127.0.0.1:7000"),
        ("localhost:7000", "localhost:7000"),
        ("tcp:[::1]:7000", "[::1]:7000"),
        ("  tcp:127.0.0.1:1  ", "127.0.0.1:1"),
    ],
)
def test_targets(address: str, target: str) -> None:
    assert grpc_target(address) == target


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("", "empty"),
        ("unix:", "socket path"),
        ("localhost", "expected unix:PATH"),
        ("tcp:host:http", "port"),
        ("tcp:host:0", "port"),
        ("tcp:host:65536", "port"),
        ("tcp::7000", "expected"),
        ("tcp:[::1:7000", "brackets"),
    ],
)
def test_bad_addresses_name_the_problem(address: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        grpc_target(address)


def test_default_is_the_root_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert default_address() == DEFAULT_ADDRESS == "unix:/run/hwbkpt/hwbkpt.sock"
    assert grpc_target(None) == "unix:/run/hwbkpt/hwbkpt.sock"


def test_environment_overrides_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "tcp:127.0.0.1:9")
    assert default_address() == "tcp:127.0.0.1:9"
    assert grpc_target(None) == "127.0.0.1:9"
    # An explicit address wins over the environment.
    assert grpc_target("unix:/x.sock") == "unix:/x.sock"


def test_empty_environment_means_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "")
    assert default_address() == DEFAULT_ADDRESS
