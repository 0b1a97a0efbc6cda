"""hwbkptd.api.gate (issue 12, item 1): who a caller is, by listener and credentials."""

from __future__ import annotations

import pytest

from hwbkptd.api.credentials import hash_token, parse_token_file
from hwbkptd.api.gate import AccessRules, Gate, Unauthenticated
from hwbkptd.core.errors import PermissionDenied
from hwbkptd.core.policy import parse_policy

POLICY = parse_policy(
    "[unauthenticated]\nmethods = ['/grpc.reflection.v1alpha.ServerReflection/Info']\n"
    "[identities.alice]\nany_process = true\n[identities.ci]\nsim = false\n"
)
TOKENS = parse_token_file(f"ci {hash_token('t0k')}\nnobody {hash_token('n0')}\n")
TLS = {"transport_security_type": [b"ssl"]}
CERT = {**TLS, "x509_pem_cert": [b"PEM"], "x509_common_name": [b"alice"]}
OPEN = "/hwbkpt.v1.BrokerService/OpenSession"
TCP = "ipv4:10.0.0.2:5000"


def test_item1_without_a_policy_the_local_socket_and_plain_loopback_are_trusted() -> None:
    gate = Gate(AccessRules())
    assert gate.identify(OPEN, "unix:", {}, ()).name == "local"
    assert gate.identify(OPEN, "ipv4:127.0.0.1:1", {}, ()).name == "loopback"


def test_item1_tokens_then_certificates_then_nobody() -> None:
    gate = Gate(AccessRules(POLICY, TOKENS))
    by_token = gate.identify(OPEN, TCP, CERT, (("authorization", "Bearer t0k"),))
    assert (by_token.name, by_token.via) == ("ci", "token")
    by_cert = gate.identify(OPEN, TCP, CERT, ())
    assert (by_cert.name, by_cert.via, by_cert.any_target) == ("alice", "certificate", True)
    for md in ((("authorization", "Bearer wrong"),), (("authorization", "Basic x"),), ()):
        with pytest.raises(Unauthenticated):
            gate.identify(OPEN, TCP, TLS, md)
    # Plain loopback with a policy: only a token.
    with pytest.raises(Unauthenticated):
        gate.identify(OPEN, "ipv4:127.0.0.1:1", {}, ())
    # The allowlist lets a caller without credentials in, with no rights at all.
    anonymous = gate.identify("/grpc.reflection.v1alpha.ServerReflection/Info", TCP, TLS, ())
    assert (anonymous.name, anonymous.max_sessions, anonymous.may_sim) == ("", 0, False)


def test_item2_known_credentials_of_an_identity_not_in_the_policy_are_denied() -> None:
    gate = Gate(AccessRules(POLICY, TOKENS))
    with pytest.raises(PermissionDenied, match="'nobody' is not in the broker's policy"):
        gate.identify(OPEN, TCP, TLS, (("authorization", "Bearer n0"),))
    with pytest.raises(PermissionDenied, match="may not drive the simulated machine"):
        gate.identify("/hwbkpt.v1.SimService/Touch", TCP, TLS, (("authorization", "Bearer t0k"),))
    # A reload swaps the rules whole.
    gate.rules = AccessRules(parse_policy("[identities.nobody]\n"), TOKENS)
    assert gate.identify(OPEN, TCP, TLS, (("authorization", "Bearer n0"),)).name == "nobody"
