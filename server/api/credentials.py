"""What proves who a caller is: bearer tokens, client certificates, the session secret.

Bearer tokens arrive as ``authorization: Bearer TOKEN`` call metadata and are looked up in
a token file that holds only their SHA-256 digests (``NAME HEXDIGEST`` lines), so reading
the file gives no one a token. Every digest is compared, in constant time, whatever
matched: how long a lookup takes says nothing about which entry came close. Tokens are
random (``openssl rand -hex 32``), so a plain digest is enough; a slow password hash
would only slow every call.

A client certificate names its holder by its first subject alternative name, else its
common name; grpc has already checked it against the CA given with ``--client-ca``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SESSION_TOKEN_KEY",
    "TokenBook",
    "TokenFileError",
    "bearer_token",
    "certificate_name",
    "hash_token",
    "metadata_value",
    "parse_token_file",
]

#: Call metadata carrying a session's secret (DESIGN section 7: never in a message body).
SESSION_TOKEN_KEY = "hwbkpt-session-token"

_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._@:-]{0,127})\s+(?P<digest>[0-9a-f]{64})$")


class TokenFileError(Exception):
    """The token file is not valid; the message names the line."""


def hash_token(token: str) -> str:
    """The hex digest a token file holds for ``token``."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenBook:
    """Token digests and whose they are."""

    entries: tuple[tuple[str, bytes], ...] = ()

    def name_of(self, token: str) -> str | None:
        """The identity ``token`` belongs to, or None."""
        digest = bytes.fromhex(hash_token(token))
        found: str | None = None
        for name, known in self.entries:
            # No early exit: every entry costs the same time, matched or not.
            if hmac.compare_digest(digest, known):
                found = name
        return found


def parse_token_file(text: str) -> TokenBook:
    """``NAME HEXDIGEST`` per line (``#`` comments and blank lines allowed)."""
    entries: list[tuple[str, bytes]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        found = _LINE.match(line)
        if found is None:
            raise TokenFileError(
                f"line {number}: expected NAME and the token's SHA-256 in lower-case hex "
                "(64 digits), e.g. made with: openssl dgst -sha256 -r TOKENFILE"
            )
        entries.append((found["name"], bytes.fromhex(found["digest"])))
    digests = [d for _, d in entries]
    if len(set(digests)) != len(digests):
        raise TokenFileError("the same token is listed twice")
    return TokenBook(tuple(entries))


def metadata_value(metadata: Iterable[tuple[str, Any]] | None, key: str) -> str:
    """The first value of ``key`` in call metadata; "" when absent."""
    for k, v in metadata or ():
        if k == key:
            return v.decode(errors="replace") if isinstance(v, bytes) else v
    return ""


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The token of an ``authorization: Bearer TOKEN`` entry; None without one, "" when
    the entry is not a bearer token."""
    value = metadata_value(metadata, "authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _first(values: Iterable[bytes] | None) -> str:
    for value in values or ():
        text = value.decode(errors="replace").strip()
        if text:
            return text
    return ""


def certificate_name(auth: Mapping[str, Iterable[bytes]]) -> str:
    """The verified client certificate's name (first SAN, else CN); "" without one."""
    if not auth.get("x509_pem_cert"):
        return ""
    return _first(auth.get("x509_subject_alternative_name")) or _first(auth.get("x509_common_name"))
