"""hwbkptd.daemon.access (issue 12): the access files at start and on reload."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog

from hwbkptd.api.credentials import hash_token
from hwbkptd.api.listeners import ConfigError
from hwbkptd.core.broker_types import Identity
from hwbkptd.daemon.access import (
    AccessFiles,
    load_rules,
    reload_rules,
    rights_under,
    tls_credentials,
)


def test_item6_rules_from_files_and_what_needs_what(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[identities.ci]\nmax_priority = 30\n")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ci {hash_token('x')}\n")
    rules = load_rules(AccessFiles(policy=str(policy), tokens=str(tokens)))
    assert rules.tokens.name_of("x") == "ci"
    assert rules.policy is not None
    assert load_rules(AccessFiles()).policy is None
    with pytest.raises(ConfigError, match="--token-file needs a --policy"):
        load_rules(AccessFiles(tokens=str(tokens)))
    with pytest.raises(ConfigError, match="No such file"):
        load_rules(AccessFiles(policy=str(tmp_path / "none")))
    with pytest.raises(ConfigError, match="TLS listeners need a --policy"):
        tls_credentials(AccessFiles(tls_cert="c", tls_key="k"), load_rules(AccessFiles()))
    with pytest.raises(ConfigError, match="go together"):
        tls_credentials(AccessFiles(tls_cert="c"), rules)
    with pytest.raises(ConfigError, match="--client-ca needs --tls-cert"):
        tls_credentials(AccessFiles(client_ca="ca"), rules)
    rights = rights_under(rules)
    new = rights(Identity(name="ci", via="token"))
    assert new is not None
    assert (new.max_priority, new.via) == (30, "token")
    assert rights(Identity(name="gone", via="token")) is None


class _Broker:
    def __init__(self) -> None:
        self.asked: list[object] = []

    async def reauthorize(self, rights: object) -> list[str]:
        self.asked.append(rights)
        return ["s1"]


def test_item6_a_broken_file_on_reload_keeps_the_old_rules(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[identities.ci]\n")
    files = AccessFiles(policy=str(policy))
    old = load_rules(files)
    broker = _Broker()
    policy.write_text("[identities.ci]\nhalt = 'yes'\n")
    with structlog.testing.capture_logs() as logs:
        kept = asyncio.run(reload_rules(files, old, broker))  # type: ignore[arg-type]
    assert kept is old
    assert broker.asked == []
    assert logs[-1]["outcome"] == "REFUSED"
    assert "identities.ci.halt: must be a bool" in logs[-1]["reason"]
    policy.write_text("[identities.ci]\nhalt = true\n")
    with structlog.testing.capture_logs() as logs:
        new = asyncio.run(reload_rules(files, old, broker))  # type: ignore[arg-type]
    assert new is not old
    assert len(broker.asked) == 1
    assert (logs[-1]["outcome"], logs[-1]["sessions_ended"]) == ("OK", ["s1"])
