"""Slot keys of the BPF hit program: which key serves which events, and its configuration.

A key belongs to the thread slot that opened its events (the owner; threads that
adopt inherited copies share it): its ``SlotConf`` comes from the owner's slot
entry, its state (previous values, hit count) is shared by every CPU's event of
the slot. Pure bookkeeping plus the ``HitPipe`` calls that keep the maps equal to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hwbkptd.arch.bpf.hitprog import (
    FILTER_CHANGED,
    FILTER_EQUALS,
    FILTER_NONE,
    MAX_REGIONS,
    SlotConf,
)
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
    """Per region, the filter the program evaluates: equals (which also covers equals with
    changed_only: the broker checks the rest), changed, or none."""
    out: list[tuple[int, bytes]] = []
    for flt in entry.value_filters:
        if flt is None:
            out.append((FILTER_NONE, b""))
        elif flt.equals is not None and len(flt.equals) <= 8:
            out.append((FILTER_EQUALS, flt.equals))
        elif flt.changed_only:
            out.append((FILTER_CHANGED, b""))
        else:
            out.append((FILTER_NONE, b""))
    return tuple(out)


@dataclass(slots=True)
class KeyInfo:
    key: int
    pid: int
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
    #: (pid, address) -> the keys of slots watching it there; the first serves the
    #: inherited copies (which the program finds by address: they lack the cookie).
    by_addr: dict[tuple[int, int], list[KeyInfo]] = field(default_factory=dict)
    #: Told (tid, count) of records the full ring dropped.
    on_dropped: Callable[[int, int], None] | None = None
    #: Told of a key about to be freed (its counts are read one last time).
    on_release: Callable[[KeyInfo], None] | None = None

    def check_dropped(self, infos: list[KeyInfo] | None = None) -> None:
        """Report records the program could not write (ring full) since the last check."""
        for info in list(self.by_key.values()) if infos is None else infos:
            dropped = self.pipe.counts(info.key).dropped
            if dropped > info.dropped:
                count, info.dropped = dropped - info.dropped, dropped
                if self.on_dropped is not None:
                    self.on_dropped(info.owner[0], count)

    def acquire(self, pid: int, tid: int, slot: ThreadSlot) -> KeyInfo:
        owner = (tid, slot.entry.chunk)
        info = self.by_owner.get(owner)
        if info is None:
            conf = conf_of(slot.entry)
            key = self.pipe.new_slot(conf if conf is not None else SlotConf(()))
            info = KeyInfo(key, pid, owner, conf, slot)
            self.by_owner[owner] = self.by_key[key] = info
            users = self.by_addr.setdefault((pid, slot.entry.chunk.address), [])
            users.append(info)
            if len(users) == 1:
                self.pipe.set_by_addr(pid, slot.entry.chunk.address, key)
        info.events += 1
        return info

    def release(self, info: KeyInfo) -> None:
        info.events -= 1
        if info.events > 0:
            return
        self.check_dropped([info])
        if self.on_release is not None:
            self.on_release(info)
        self.by_owner.pop(info.owner, None)
        self.by_key.pop(info.key, None)
        where = (info.pid, info.owner[1].address)
        users = self.by_addr.get(where, [])
        if info in users:
            first = users[0] is info
            users.remove(info)
            if not users:
                del self.by_addr[where]
                self.pipe.set_by_addr(*where, None)
            elif first:
                self.pipe.set_by_addr(*where, users[0].key)
        self.pipe.free_slot(info.key)

    def inherited(self, pid: int, address: int) -> KeyInfo | None:
        """The key the program uses for inherited copies trapping at ``address``."""
        users = self.by_addr.get((pid, address))
        return users[0] if users else None

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
