"""Domain errors. Only ``hwbkptd.api.status`` turns them into gRPC statuses."""

from __future__ import annotations

__all__ = [
    "Aborted",
    "BrokerError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unavailable",
]


class BrokerError(Exception):
    """Base of every error a client can cause; never becomes UNKNOWN or INTERNAL."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(BrokerError):
    """A field of the request is wrong. ``field`` is its path, e.g. ``spec.length``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(BrokerError):
    """No such session, request, process or thread. ``field`` names what was looked up."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PermissionDenied(BrokerError):
    """The caller may not do this. ``field`` names the field that asked for it, if one did."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class FailedPrecondition(BrokerError):
    pass


class ResourceExhausted(BrokerError):
    pass


class Aborted(BrokerError):
    """The call lost to a newer one (an event stream replaced by a newer stream)."""


class Unavailable(BrokerError):
    """The broker cannot serve this now (it is shutting down); a retry may succeed."""
