"""HwbkptError: every failed call, with its status code, message and faulty fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "FieldViolation",
    "HwbkptError",
    "SessionLostError",
    "from_rpc_error",
    "from_status_bytes",
]


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One field the broker rejected (google.rpc.BadRequest), e.g. ``spec.length``."""

    field: str
    description: str


class HwbkptError(Exception):
    """A call the broker refused or could not complete.

    ``code`` is the gRPC status name (``"INVALID_ARGUMENT"``, ``"NOT_FOUND"``, ...);
    ``str()`` gives ``"CODE: message"``.
    """

    def __init__(
        self,
        code: str,
        message: str,
        field_violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field_violations = field_violations

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the fields at fault, in the broker's order."""
        return tuple(v.field for v in self.field_violations)

    @property
    def status_code(self) -> grpc.StatusCode | None:
        """The same code as a ``grpc.StatusCode`` (``None`` for client-side codes)."""
        return getattr(grpc.StatusCode, self.code, None)


class SessionLostError(HwbkptError):
    """The event stream broke and the session could not be resumed within its lease."""


def from_rpc_error(err: grpc.RpcError) -> HwbkptError:
    """Wrap a gRPC error; BadRequest details become ``field_violations``."""
    code_fn = getattr(err, "code", None)
    details_fn = getattr(err, "details", None)
    code: grpc.StatusCode = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    message = (details_fn() if callable(details_fn) else None) or ""
    return HwbkptError(code.name, message, _violations(err))


def _violations(err: grpc.RpcError) -> tuple[FieldViolation, ...]:
    try:
        # Sync errors are grpc.Call objects and aio errors carry the same accessors.
        status = rpc_status.from_call(cast(grpc.Call, err))
    except (ValueError, AttributeError, TypeError):
        # A status whose rich details disagree with its code, or a call object without
        # trailers (a client-side failure): there are no field details to report.
        return ()
    if status is None:
        return ()
    return _status_violations(status)


def from_status_bytes(data: bytes) -> HwbkptError:
    """The error a serialized ``google.rpc.Status`` carries (a refusal sent in a message)."""
    status = status_pb2.Status()
    try:
        status.ParseFromString(data)
    except DecodeError:
        return HwbkptError("UNKNOWN", "the broker sent an unreadable status")
    code = next((c for c in grpc.StatusCode if c.value[0] == status.code), grpc.StatusCode.UNKNOWN)
    return HwbkptError(code.name, status.message, _status_violations(status))


def _status_violations(status: status_pb2.Status) -> tuple[FieldViolation, ...]:
    found: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return tuple(found)
