"""The gRPC health service's request and answer (grpc.health.v1), shared by both transports:
``hwbkpt health``, the Dockerfile's HEALTHCHECK and the Kubernetes probes ask it."""

from __future__ import annotations

from grpc_health.v1 import health_pb2

__all__ = ["SERVING", "health_request", "status_name"]

SERVING = "SERVING"


def health_request(service: str) -> health_pb2.HealthCheckRequest:
    return health_pb2.HealthCheckRequest(service=service)


def status_name(answer: health_pb2.HealthCheckResponse) -> str:
    """ "SERVING", "NOT_SERVING", "UNKNOWN" or "SERVICE_UNKNOWN"."""
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))
