"""A process's binaries as mapped: /proc/PID/maps -> modules with their load biases.

Each file-backed mapping of an ELF file belongs to one module; the module's
load bias (0 for ET_EXEC, the ASLR base for PIE executables and shared objects)
comes from the file's PT_LOAD segment at the mapping's file offset. Images are
shared between processes and kept by build-id (``ImageCache``): a second process
of the same program, or the same library in many processes, is read once.
"""

from __future__ import annotations

import bisect
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError

from hwbkptd.names.elf_image import DEBUG_ROOT, ElfImage, Report

__all__ = ["ImageCache", "Mapping", "Module", "ProcessView", "parse_maps"]


@dataclass(frozen=True, slots=True)
class Mapping:
    start: int
    end: int
    offset: int
    path: str


@dataclass(frozen=True, slots=True)
class Module:
    path: str
    start: int
    end: int
    bias: int
    image: ElfImage

    @property
    def basename(self) -> str:
        return os.path.basename(self.path)


def parse_maps(text: str) -> list[Mapping]:
    """File-backed mappings of a /proc/PID/maps text, in address order."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        lo, hi = parts[0].split("-")
        path = parts[5].strip()
        if path.endswith(" (deleted)"):
            path = path[: -len(" (deleted)")]
        out.append(Mapping(int(lo, 16), int(hi, 16), int(parts[2], 16), path))
    return out


class ImageCache:
    """ElfImages by file identity and by build-id; ``loads`` counts files actually read."""

    def __init__(self, debug_root: Path = DEBUG_ROOT) -> None:
        self._debug_root = debug_root
        self._by_file: dict[tuple[int, int, int, int], ElfImage | None] = {}
        self._by_build_id: dict[str, ElfImage] = {}
        self.loads = 0
        #: One file read at a time: a names worker thread (issue 14) and the event loop may
        #: both miss; a hit reads the dictionary without it.
        self._loading = threading.Lock()

    def get(self, path: str, report: Report | None = None) -> ElfImage | None:
        """The image of ``path``; None when it is not a readable ELF file. ``report``:
        the progress of reading it, when it is read now."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key in self._by_file:
            return self._by_file[key]
        with self._loading:
            if key in self._by_file:
                return self._by_file[key]
            try:
                self.loads += 1
                image: ElfImage | None = ElfImage.load(path, self._debug_root, report)
            except (OSError, ELFError):
                image = None
            if image is not None and image.build_id:
                # The same build at another path (a copy, a hard link): one image.
                image = self._by_build_id.setdefault(image.build_id, image)
            self._by_file[key] = image
        return image


class ProcessView:
    """The modules mapped in one process at one moment."""

    def __init__(
        self, pid: int, maps: list[Mapping], images: ImageCache, report: Report | None = None
    ) -> None:
        self.pid = pid
        first: dict[str, Mapping] = {}
        span: dict[str, tuple[int, int]] = {}
        for m in maps:
            if m.path not in first or m.offset < first[m.path].offset:
                first[m.path] = m
            lo, hi = span.get(m.path, (m.start, m.end))
            span[m.path] = (min(lo, m.start), max(hi, m.end))
        self.modules: list[Module] = []
        for path, m in first.items():
            image = images.get(path, report)
            if image is None:
                continue
            lo, hi = span[path]
            bias = image.bias_for(m.start, m.offset)
            # .bss beyond the file's last page is an anonymous mapping: still this module's.
            hi = max(hi, bias + image.link_end)
            self.modules.append(Module(path, lo, hi, bias, image))
        self.modules.sort(key=lambda mod: mod.start)
        self._starts = [mod.start for mod in self.modules]
        #: The program itself: the first mapping's file (the kernel maps it first).
        self.executable = min(maps, key=lambda m: m.start).path if maps else ""

    @classmethod
    def read(
        cls,
        pid: int,
        images: ImageCache,
        proc: Path = Path("/proc"),
        report: Report | None = None,
    ) -> ProcessView:
        """OSError when the process is gone or its maps cannot be read."""
        text = (proc / str(pid) / "maps").read_text()
        return cls(pid, parse_maps(text), images, report)

    def module_at(self, address: int) -> Module | None:
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and address < self.modules[i].end:
            return self.modules[i]
        return None

    def named(self, module: str) -> list[Module]:
        """Modules whose path or file name is ``module`` (``libc.so.6``, ``/usr/lib/..``)."""
        return [m for m in self.modules if module in (m.path, m.basename)]
