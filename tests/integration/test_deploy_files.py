"""Issue 14, item 1: make test checks the deploy files: the systemd unit with
``systemd-analyze verify`` (warnings count as failures: it exits 0 on an unknown key) and the
Kubernetes manifest with ``kubernetes-validate --strict``. Each check is also shown to fail
on a broken copy, so it can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy/systemd/hwbkptd.service"
MANIFEST = REPO / "deploy/kubernetes/hwbkptd.yaml"
HWBKPTD = Path(sys.executable).parent / "hwbkptd"
VALIDATE = Path(sys.executable).parent / "kubernetes-validate"


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify on the unit with ExecStart pointing at this checkout's
    hwbkptd (verify checks that the program exists)."""
    unit = tmp_path / "hwbkptd.service"
    unit.write_text(unit_text.replace("/opt/hwbkpt/bin/hwbkptd", str(HWBKPTD)))
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (the unit is checked where it is)",
)


@needs_systemd_analyze
def test_item1_systemd_unit_verifies_clean(tmp_path: Path) -> None:
    done = _verify(UNIT.read_text(), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""


@needs_systemd_analyze
def test_item1_systemd_verify_catches_a_bad_unit(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=sideways")
    done = _verify(broken, tmp_path)
    assert "ProtectSystem" in done.stderr or "protect system" in done.stderr, done.stderr


def test_item1_systemd_unit_hardening() -> None:
    service: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            service[key] = value
    assert service["RuntimeDirectory"] == "hwbkpt"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    caps = set(service["CapabilityBoundingSet"].split())
    assert {"CAP_SYS_PTRACE", "CAP_PERFMON", "CAP_BPF"} <= caps
    assert "CAP_NET_ADMIN" not in caps
    assert service["KillSignal"] == "SIGTERM"


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VALIDATE), "--strict", str(path)], capture_output=True, text=True, timeout=120
    )


def test_item1_manifest_validates() -> None:
    done = _validate(MANIFEST)
    assert done.returncode == 0, done.stdout + done.stderr
    # Namespace, the config and policy ConfigMaps, the DaemonSet: each validated.
    assert done.stdout.count("passed for resource") == 4, done.stdout


def test_item1_manifest_validation_catches_a_bad_field(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(MANIFEST.read_text().replace("hostPID: true", "hostPid: true"))
    done = _validate(broken)
    assert done.returncode != 0, done.stdout


def _daemonset() -> dict[str, Any]:
    (ds,) = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d["kind"] == "DaemonSet"]
    return ds  # type: ignore[no-any-return]


def test_item1_daemonset_shape() -> None:
    pod = _daemonset()["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    (container,) = pod["containers"]
    caps = container["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    assert {"SYS_PTRACE", "PERFMON", "BPF"} <= set(caps["add"])
    assert "SYS_ADMIN" not in caps["add"]
    for probe in ("livenessProbe", "readinessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:4] == ["hwbkpt", "--server", "unix:/run/hwbkpt/hwbkpt.sock", "health"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["socket-dir"]["hostPath"]["path"] == "/run/hwbkpt"
    assert volumes["tls"]["secret"]["secretName"] == "hwbkptd-tls"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["socket-dir"] == "/run/hwbkpt"


def test_item1_daemonset_config_uses_the_mounted_tls_and_policy(tmp_path: Path) -> None:
    """The ConfigMap's flags name files in the mounted secret and policy ConfigMap, and the
    policy it ships passes hwbkptd --check-policy."""
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    conf = tomllib.loads(maps["hwbkptd-config"]["data"]["hwbkptd.toml"])
    pod = _daemonset()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    tls_keys = {"tls.crt", "tls.key", "ca.crt"}  # a kubernetes.io/tls secret plus the CA
    for flag in ("tls-cert", "tls-key", "client-ca"):
        folder, _, name = conf[flag].rpartition("/")
        assert folder == mounts["tls"], (flag, conf[flag])
        assert name in tls_keys, (flag, conf[flag])
    assert volumes["tls"]["secret"]["secretName"] == "hwbkptd-tls"
    folder, _, name = conf["policy"].rpartition("/")
    assert folder == mounts["policy"]
    assert volumes["policy"]["configMap"]["name"] == "hwbkptd-policy"
    policy = tmp_path / name
    policy.write_text(maps["hwbkptd-policy"]["data"][name])
    checked = subprocess.run(
        [str(HWBKPTD), "--check-policy", str(policy)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stderr
    assert any(a.startswith("tcp:") for a in conf["listen"]), conf["listen"]


def _shipped_configs() -> list[tuple[str, str]]:
    cm = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d["kind"] == "ConfigMap"]
    return [
        ("deploy/hwbkptd.toml", (REPO / "deploy/hwbkptd.toml").read_text()),
        ("the DaemonSet's ConfigMap", cm[0]["data"]["hwbkptd.toml"]),
    ]


@pytest.mark.parametrize(("where", "text"), _shipped_configs())
def test_item1_shipped_configs_are_accepted(where: str, text: str, tmp_path: Path) -> None:
    """The config files the unit and the DaemonSet use pass hwbkptd's own checks."""
    conf = tmp_path / "hwbkptd.toml"
    conf.write_text(text)
    done = subprocess.run(
        [str(HWBKPTD), "--config", str(conf), "--print-config"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, f"{where}: {done.stderr}"
    assert f"# from file {conf}" in done.stdout
