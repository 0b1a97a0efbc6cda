"""Issue 12: a broker on TLS with a policy, its CA, certificates and tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from e2e_support import Daemon, start_daemon
from pki import Pki, make_pki, make_token

import hwbkpt

__all__ = ["POLICY", "Secured", "start_secured"]

#: alice: everything; bob: any process, defaults otherwise; carol: any process, priority
#: up to 50, no halting, no kernel. Nobody without credentials.
POLICY = """
[identities.alice]
any_process = true
kernel = true
halt = true
max_priority = 100
see_session_names = true

[identities.bob]
any_process = true

[identities.carol]
any_process = true
max_priority = 50
"""


@dataclass
class Secured:
    daemon: Daemon
    pki: Pki
    tcp: str
    dir: Path
    policy: Path
    tokens: dict[str, Path]

    def client(self, who: str | None = None, **kw: str) -> hwbkpt.Client:
        """A TLS client presenting ``who``'s token (None: no credentials)."""
        token = str(self.tokens[who]) if who else None
        return hwbkpt.Client(self.tcp, ca=str(self.pki.ca), token_file=token, **kw)


def start_secured(
    workdir: Path, *, mtls: bool = False, policy: str = POLICY, machine: str = "sim"
) -> Secured:
    """A broker on its Unix socket and on TLS at 127.0.0.1 (client certificates required
    with ``mtls``), alice, bob, carol and u1000 holding tokens."""
    pki = make_pki(workdir / "pki")
    crt, key = pki.issue("server", "hwbkptd", san="IP:127.0.0.1,DNS:localhost")
    policy_path = workdir / "policy.toml"
    policy_path.write_text(policy)
    tokens: dict[str, Path] = {}
    lines = []
    for name in ("alice", "bob", "carol", "u1000"):
        tokens[name], line = make_token(pki.dir, name)
        lines.append(line)
    token_file = workdir / "tokens"
    token_file.write_text("".join(lines))
    extra = [
        "--listen", "tcp:127.0.0.1:0", "--tls-cert", str(crt), "--tls-key", str(key),
        "--policy", str(policy_path), "--token-file", str(token_file),
    ]  # fmt: skip
    if mtls:
        extra += ["--client-ca", str(pki.ca)]
    daemon = start_daemon(workdir, machine=machine, extra=tuple(extra))
    tcp = next(a for a in (workdir / "ready").read_text().split() if a.startswith("tcp:"))
    return Secured(daemon, pki, tcp, workdir, policy_path, tokens)
