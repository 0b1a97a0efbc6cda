"""Issue 15 (a published proto package): the Python client's wheel carries the protos, and
they compile from the unpacked wheel alone; `make proto-image` writes `buf build` output."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import grpc_tools
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[2]
PROTOS = sorted(p.name for p in (REPO / "proto" / "hwbkpt" / "v1").glob("*.proto"))


def test_item4_wheel_carries_the_protos_and_they_compile_alone(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(REPO / "clients" / "python")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("hwbkpt-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        shipped = sorted(n.rsplit("/", 1)[1] for n in names if n.endswith(".proto"))
        assert shipped == PROTOS, names
        zf.extractall(tmp_path / "unpacked")
    for name in PROTOS:
        inside = tmp_path / "unpacked" / "hwbkpt" / "proto" / "hwbkpt" / "v1" / name
        assert inside.read_bytes() == (REPO / "proto" / "hwbkpt" / "v1" / name).read_bytes()
    # Only the wheel's protos and protoc's own well-known types (google/protobuf/*.proto).
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    out = tmp_path / "stubs"
    out.mkdir()
    compiled = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc",
         f"-I{tmp_path / 'unpacked' / 'hwbkpt' / 'proto'}", f"-I{well_known}",
         f"--python_out={out}", f"--grpc_python_out={out}",
         f"--descriptor_set_out={out / 'set.binpb'}",
         *(f"hwbkpt/v1/{n}" for n in PROTOS)],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert compiled.returncode == 0, compiled.stderr
    assert (out / "hwbkpt" / "v1" / "broker_pb2_grpc.py").exists()
    files = descriptor_pb2.FileDescriptorSet.FromString((out / "set.binpb").read_bytes())
    enums = {e.name for f in files.file for e in f.enum_type}
    assert {"RemovedReason", "PriorityPreset", "MachineKind"} <= enums


def test_item4_make_proto_image_writes_the_buf_build_output(tmp_path: Path) -> None:
    done = subprocess.run(
        ["make", "-s", "proto-image"], cwd=REPO, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    image = descriptor_pb2.FileDescriptorSet.FromString(
        (REPO / "dist" / "hwbkpt.binpb").read_bytes()
    )
    names = {f.name for f in image.file}
    assert {"hwbkpt/v1/broker.proto", "hwbkpt/v1/sim.proto"} <= names
    broker = next(f for f in image.file if f.name == "hwbkpt/v1/broker.proto")
    assert "BrokerService" in [s.name for s in broker.service]
