"""Hit filters evaluated in the broker (DESIGN section 3), and their validation."""

from __future__ import annotations

from hwbkptd.core.errors import InvalidArgument
from hwbkptd.core.model import Access, Filter

__all__ = ["MAX_FILTER_COUNT", "passes", "reached_stop", "validate_filter"]

#: ignore_first and stop_after travel as uint32 on the wire.
MAX_FILTER_COUNT = 2**32 - 1


def validate_filter(flt: Filter, *, length: int, access: Access, field: str) -> None:
    """Raise ``InvalidArgument`` naming ``{field}.x`` for a filter this request cannot use."""
    for name, count in (("ignore_first", flt.ignore_first), ("stop_after", flt.stop_after)):
        if not 0 <= count <= MAX_FILTER_COUNT:
            raise InvalidArgument(f"{field}.{name}", f"must be 0..{MAX_FILTER_COUNT}, got {count}")
    value_filter = flt.changed_only or flt.equals is not None
    if access is Access.EXEC and value_filter:
        raise InvalidArgument(
            f"{field}.changed_only" if flt.changed_only else f"{field}.equals",
            "value filters need a data watch; an exec breakpoint has no value",
        )
    if flt.equals is not None and len(flt.equals) != length:
        raise InvalidArgument(
            f"{field}.equals",
            f"the value must be as long as the watched region ({length} bytes), "
            f"got {len(flt.equals)}",
        )


def passes(flt: Filter, *, hit_count: int, value: bytes, old_value: bytes) -> bool:
    """Whether a hit (the ``hit_count``-th attributed to its request) is reported."""
    if hit_count <= flt.ignore_first:
        return False
    if flt.changed_only and value == old_value:
        return False
    return flt.equals is None or value == flt.equals


def reached_stop(flt: Filter, reported_count: int) -> bool:
    """True once a request with ``stop_after`` has reported that many hits."""
    return flt.stop_after > 0 and reported_count >= flt.stop_after
