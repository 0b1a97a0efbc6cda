"""The gRPC layer: servicers, status mapping and message conversion (no domain logic)."""

from __future__ import annotations

__all__: list[str] = []
