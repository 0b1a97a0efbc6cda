"""Test certificates made with the ``openssl`` command line: a CA, a server certificate for
127.0.0.1, client certificates (current, expired, or from a CA the broker does not know)
and bearer tokens with their token-file lines (issue 12)."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Pki", "make_pki", "make_token"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Pki:
    dir: Path
    name: str

    @property
    def ca(self) -> Path:
        return self.dir / f"{self.name}-ca.crt"

    def issue(self, stem: str, cn: str, *, san: str = "", days: int = 30) -> tuple[Path, Path]:
        """A certificate and key signed by this CA; ``days`` -1 makes one already expired."""
        key, csr, crt = (self.dir / f"{stem}.{ext}" for ext in ("key", "csr", "crt"))
        ext = self.dir / f"{stem}.ext"
        ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
        _openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}", cwd=self.dir,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca),
            "-CAkey", str(self.dir / f"{self.name}-ca.key"), "-CAcreateserial",
            "-out", str(crt), "-days", str(days), "-extfile", str(ext), cwd=self.dir,
        )  # fmt: skip
        return crt, key


def make_pki(directory: Path, name: str = "test") -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.crt", "-days", "30",
        "-subj", f"/CN=hwbkpt {name} CA", cwd=directory,
    )  # fmt: skip
    return Pki(directory, name)


def make_token(directory: Path, name: str) -> tuple[Path, str]:
    """A token file for a client and the line the broker's token file holds for it."""
    token = secrets.token_hex(32)
    path = directory / f"{name}.token"
    path.write_text(token + "\n")
    return path, f"{name} {hashlib.sha256(token.encode()).hexdigest()}\n"
