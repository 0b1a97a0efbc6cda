"""A user-space hit put in the words of the request's author (issue 13).

Runs on the hit path, for each reported hit of a process or thread request when the
machine has ``Names``: the instruction pointer as ``function+0x1c`` and ``file.c:42``,
the data address as ``counter+0x8``, and for a request resolved to a struct or an
array the member whose bytes changed. ``Names`` caches by address, so a hit that
repeats an ip costs two dictionary lookups.
"""

from __future__ import annotations

from hwbkptd.core.events import Hit
from hwbkptd.core.mechanism import HitReport
from hwbkptd.core.model import Chunk
from hwbkptd.core.names import HitWords, Names, Resolved, member_written

__all__ = ["add_words", "put_words"]


def _chunk_at(chunks: tuple[Chunk, ...], address: int) -> Chunk | None:
    for chunk in chunks:
        if chunk.address <= address < chunk.address + max(chunk.length, 1):
            return chunk
    return None


def add_words(
    names: Names,
    hit: Hit,
    report: HitReport,
    resolved: Resolved | None,
    chunks: tuple[Chunk, ...],
) -> None:
    """Fill ``hit``'s words (it was just built for this report and nobody holds it yet)."""
    put_words(
        hit,
        names.describe_hit(report.pid, report.ip, report.address, hit.access),
        report,
        resolved,
        chunks,
    )


def put_words(
    hit: Hit,
    words: HitWords,
    report: HitReport,
    resolved: Resolved | None,
    chunks: tuple[Chunk, ...],
) -> None:
    """``add_words`` with the words of (pid, ip, address, access) already looked up: a run
    of hits from one instruction looks them up once."""
    if words.ip_symbol:
        hit.ip_symbol = words.ip_symbol
    hit.ip_line = words.ip_line
    hit.address_symbol = words.address_symbol
    if resolved is not None and resolved.members:
        # The values are the whole region's; the chunk matters only when nothing changed.
        chunk = _chunk_at(chunks, report.address)
        span = (chunk.address, chunk.length) if chunk is not None else (report.address, 1)
        hit.member = member_written(resolved, span, hit.value, hit.old_value)
