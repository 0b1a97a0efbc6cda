"""The daemon's access files: the policy, the token file and the TLS material.

Read at start and again on SIGHUP. A file that does not parse is refused whole, with
the reason, and the rules in force stay (``reload_rules``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import structlog

from hwbkptd.api.credentials import TokenBook, TokenFileError, parse_token_file
from hwbkptd.api.gate import AccessRules
from hwbkptd.api.listeners import ConfigError
from hwbkptd.core.broker import Broker
from hwbkptd.core.broker_types import Identity
from hwbkptd.core.policy import Policy, PolicyError, parse_policy

__all__ = [
    "AccessFiles",
    "check_policy_file",
    "load_rules",
    "reload_rules",
    "rights_under",
    "tls_credentials",
]

_log = structlog.get_logger("hwbkptd.audit")


@dataclass(frozen=True, slots=True)
class AccessFiles:
    policy: str | None = None
    tokens: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    #: CA of the client certificates; given, every TLS client must present one.
    client_ca: str | None = None


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise ConfigError(f"{what} {path}: {err.strerror}") from None


def _policy(path: str) -> Policy:
    try:
        return parse_policy(_read(path, "--policy").decode("utf-8", errors="replace"))
    except PolicyError as err:
        raise ConfigError(f"--policy {path}: {err}") from None


def check_policy_file(path: str) -> Policy:
    """``hwbkptd --check-policy``: the policy, or ConfigError naming what is wrong."""
    return _policy(path)


def load_rules(files: AccessFiles) -> AccessRules:
    policy = _policy(files.policy) if files.policy else None
    tokens = TokenBook()
    if files.tokens:
        if policy is None:
            raise ConfigError("--token-file needs a --policy saying what each identity may do")
        try:
            tokens = parse_token_file(_read(files.tokens, "--token-file").decode())
        except (TokenFileError, UnicodeDecodeError) as err:
            raise ConfigError(f"--token-file {files.tokens}: {err}") from None
    return AccessRules(policy=policy, tokens=tokens)


def tls_credentials(files: AccessFiles, rules: AccessRules) -> grpc.ServerCredentials | None:
    """The TLS listeners' credentials; None without ``--tls-cert``."""
    if not files.tls_cert and not files.tls_key:
        if files.client_ca:
            raise ConfigError("--client-ca needs --tls-cert and --tls-key")
        return None
    if not (files.tls_cert and files.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if rules.policy is None:
        raise ConfigError(
            "TLS listeners need a --policy: without one only the local socket is served, "
            "fully trusted"
        )
    pair = (_read(files.tls_key, "--tls-key"), _read(files.tls_cert, "--tls-cert"))
    ca = _read(files.client_ca, "--client-ca") if files.client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=bool(ca))


def rights_under(rules: AccessRules) -> Callable[[Identity], Identity | None]:
    """What a session's identity may do under ``rules`` (None: it may no longer be served)."""

    def rights(old: Identity) -> Identity | None:
        if rules.policy is None:
            return old
        new = rules.policy.identity(old.name, old.via)
        return None if new is None else dataclasses.replace(new, via=old.via)

    return rights


async def reload_rules(files: AccessFiles, current: AccessRules, broker: Broker) -> AccessRules:
    """The rules from the files again (SIGHUP); on any error the current ones stay."""
    try:
        rules = load_rules(files)
    except ConfigError as err:
        _log.error("audit", method="policy_reload", outcome="REFUSED", reason=str(err))
        return current
    ended = await broker.reauthorize(rights_under(rules))
    _log.info(
        "audit",
        method="policy_reload",
        outcome="OK",
        identities=sorted(rules.policy.identities) if rules.policy else [],
        sessions_ended=ended,
    )
    return rules
