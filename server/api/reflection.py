"""gRPC server reflection, v1 and v1alpha, from one servicer.

grpcio-reflection (1.85) serves only ``grpc.reflection.v1alpha.ServerReflection``; clients
built on newer gRPC libraries (grpcurl, Postman, grpc-js tools) ask
``grpc.reflection.v1.ServerReflection`` first. The two protos have the same messages with
the same field numbers (v1 is v1alpha renamed, not changed), so the same servicer and the
same (de)serializers answer both: a v1 request decodes as a v1alpha one, and the answer's
bytes are a valid v1 answer.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
import grpc.aio
from grpc_reflection.v1alpha import reflection, reflection_pb2

# reflection.aio is this module, re-exported without a type stub that names it.
from grpc_reflection.v1alpha._async import ReflectionServicer

__all__ = ["V1ALPHA_SERVICE", "V1_SERVICE", "enable_reflection"]

V1ALPHA_SERVICE: str = reflection.SERVICE_NAME
V1_SERVICE = "grpc.reflection.v1.ServerReflection"


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection for ``service_names`` (and both reflection services) on ``server``."""
    names = (*service_names, V1_SERVICE, V1ALPHA_SERVICE)
    servicer = ReflectionServicer(names)
    handlers = {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers(
        tuple(grpc.method_handlers_generic_handler(name, handlers) for name in names[-2:])
    )
