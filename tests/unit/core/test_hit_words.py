"""hwbkptd.core.hit_words: a hit gets the words Names gives and the member it wrote."""

from __future__ import annotations

from hwbkptd.core.events import Hit
from hwbkptd.core.hit_words import add_words
from hwbkptd.core.mechanism import HitReport
from hwbkptd.core.model import Access, Chunk, Scope
from hwbkptd.core.names import HitWords, Member, NameProgress, Resolved


class FakeNames:
    """Names for a pure test: records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int, int, Access | None]] = []

    def resolve(self, scope: Scope, pid: int, location: str, access: Access) -> Resolved:
        raise AssertionError("not on the hit path")

    def prepare_hits(self, pid: int, address: int, report: NameProgress) -> None:
        pass

    def describe_hit(self, pid: int, ip: int, address: int, access: Access | None) -> HitWords:
        self.asked.append((pid, ip, address, access))
        return HitWords("bump+0x4", "named.c:37", "cfg+0x8")

    def forget(self, pid: int) -> None:
        pass


RESOLVED = Resolved(
    "&cfg", 0x1000, 16, "cfg", members=(Member(0, 8, "cfg.a"), Member(8, 8, "cfg.b"))
)
CHUNKS = (Chunk("dr", 0x1000, 8, Access.WRITE), Chunk("dr", 0x1008, 8, Access.WRITE))


def _hit(value: bytes, old: bytes) -> Hit:
    return Hit(7, 7, -1, 0x4010, 0x1008, Access.WRITE, value, old, 1, 1, ip_symbol="old")


def _report() -> HitReport:
    return HitReport(7, 7, "dr", 1, 1, 0x4010, 0x1008, 0)


def test_item3_words_and_member() -> None:
    names = FakeNames()
    hit = _hit(bytes(8) + b"\x05" + bytes(7), bytes(16))
    add_words(names, hit, _report(), RESOLVED, CHUNKS)
    assert names.asked == [(7, 0x4010, 0x1008, Access.WRITE)]
    assert (hit.ip_symbol, hit.ip_line, hit.address_symbol) == (
        "bump+0x4",
        "named.c:37",
        "cfg+0x8",
    )
    assert hit.member == "cfg.b"


def test_item3_unchanged_value_names_the_trapping_chunk() -> None:
    hit = _hit(bytes(16), bytes(16))
    add_words(FakeNames(), hit, _report(), RESOLVED, CHUNKS)
    assert hit.member == "cfg.b"


def test_item3_a_request_by_address_gets_words_but_no_member() -> None:
    hit = _hit(b"\x01" + bytes(15), bytes(16))
    add_words(FakeNames(), hit, _report(), None, CHUNKS)
    assert hit.address_symbol == "cfg+0x8"
    assert hit.member == ""
