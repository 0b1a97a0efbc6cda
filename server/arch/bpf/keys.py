"""Slot keys of the BPF hit program: which key serves which events, and its configuration.

A key belongs to the thread slot that opened its events (the owner; threads that
adopt inherited copies share it): its ``SlotConf`` comes from the owner's slot
entry, its state (previous values, hit count) is shared by every CPU's event of
the slot. Pure bookkeeping plus the ``HitPipe`` calls that keep the maps equal to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hwbkptd.arch.bpf.hitprog import MAX_REGIONS, SlotConf
from hwbkptd.arch.bpf.pipe import HitPipe
from hwbkptd.arch.perf.nonstop_table import ThreadSlot
from hwbkptd.core.mechanism import SlotEntry
from hwbkptd.core.model import Chunk

__all__ = ["BpfKeys", "KeyInfo", "conf_of"]


def conf_of(entry: SlotEntry) -> SlotConf | None:
    """What the program reads for this entry; None when it cannot (values are read late)."""
    regions = entry.regions
    if len(regions) > MAX_REGIONS or any(n > 8 for _, n in regions):
        return None
    return SlotConf(regions, kernel=entry.kernel, filters=entry_filters(entry))


def entry_filters(entry: SlotEntry) -> tuple[tuple[int, bytes], ...]:
    """Per region, the filter the program evaluates (none unless the entry carries them)."""
    kinds = getattr(entry, "kernel_filters", ())
    return tuple(kinds)


@dataclass(slots=True)
class KeyInfo:
    key: int
    owner: tuple[int, Chunk]
    #: None: the program reads nothing for this key (values read late).
    conf: SlotConf | None
    #: The owner's slot: count-only reports are attributed to it.
    slot: ThreadSlot
    events: int = 0
    #: Hits of the key accounted for in reports so far (the program's count is ahead).
    accounted: int = 0
    dropped: int = 0


@dataclass(slots=True)
class BpfKeys:
    pipe: HitPipe
    by_owner: dict[tuple[int, Chunk], KeyInfo] = field(default_factory=dict)
    by_key: dict[int, KeyInfo] = field(default_factory=dict)
    #: event id -> (link fd, key)
    links: dict[int, tuple[int, KeyInfo]] = field(default_factory=dict)

    def acquire(self, tid: int, slot: ThreadSlot) -> KeyInfo:
        owner = (tid, slot.entry.chunk)
        info = self.by_owner.get(owner)
        if info is None:
            conf = conf_of(slot.entry)
            key = self.pipe.new_slot(conf if conf is not None else SlotConf(()))
            info = self.by_owner[owner] = self.by_key[key] = KeyInfo(key, owner, conf, slot)
        info.events += 1
        return info

    def release(self, info: KeyInfo) -> None:
        info.events -= 1
        if info.events <= 0:
            self.by_owner.pop(info.owner, None)
            self.by_key.pop(info.key, None)
            self.pipe.free_slot(info.key)

    def refresh(self, tid: int, slot: ThreadSlot) -> None:
        """The owner's entry may have new holders (regions, filters): update the map."""
        info = self.by_owner.get((tid, slot.entry.chunk))
        if info is None:
            return
        info.slot = slot
        conf = conf_of(slot.entry)
        if conf != info.conf:
            info.conf = conf
            self.pipe.set_conf(info.key, conf if conf is not None else SlotConf(()))

    def filtered(self) -> list[KeyInfo]:
        return [i for i in self.by_key.values() if i.conf is not None and i.conf.filtering]
