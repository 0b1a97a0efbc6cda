"""Names in a process's own binaries, and hits in the same words (issue 13).

``Resolver`` implements the core's ``Names`` port for user space: a location
string becomes an address and a length (``resolve``), and a hit's instruction
pointer and data address become ``function+0x1c``, ``file.c:42`` and
``counter+0x8`` (``describe_hit``). It reads /proc/PID/maps, the ELF files
mapped there and their DWARF (``process_view``, ``elf_image``, ``dwarf_info``).

Caches: images by build-id (shared by every process); per process, its view of
the mappings and the words of each ip and address already seen. ``forget``
drops a process's view (exec, exit); an address outside every known module
reads the mappings again once (a library mapped since, e.g. by dlopen).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import structlog

from hwbkptd.core.errors import BrokerError, InvalidArgument, NotFound
from hwbkptd.core.model import Access, Scope
from hwbkptd.core.names import HitWords, MissingDebugInfo, NotMappedYet, Resolved
from hwbkptd.names.elf_image import DEBUG_ROOT, Report
from hwbkptd.names.locations import FIELD, Location, parse
from hwbkptd.names.process_view import ImageCache, Module, ProcessView
from hwbkptd.names.variables import resolve_in_module

__all__ = ["Resolver"]

_NO_WORDS = HitWords()
_log = structlog.get_logger("hwbkptd.names")


class Resolver:
    def __init__(self, proc: Path = Path("/proc"), debug_root: Path = DEBUG_ROOT) -> None:
        self._proc = proc
        self.images = ImageCache(debug_root)
        self._views: dict[int, ProcessView] = {}
        self._words: dict[int, dict[int, tuple[str, str]]] = {}
        self._data_words: dict[int, dict[int, str]] = {}
        #: pid -> (ip, address, exec) -> the words of a hit: the hit path's one lookup
        #: (a tight loop hits the same pair each time; BPF delivers up to ~100,000/s).
        self._hit_words: dict[int, dict[tuple[int, int, bool], HitWords]] = {}
        self._warned: set[int] = set()
        self._preparing = threading.Lock()

    # --- the process's modules -------------------------------------------------------
    def view(self, pid: int, *, fresh: bool = False, report: Report | None = None) -> ProcessView:
        """The process's mapped modules (read again when ``fresh``); NotFound ``spec.pid``."""
        view = self._views.get(pid)
        if view is None or fresh:
            try:
                view = ProcessView.read(pid, self.images, self._proc, report)
            except OSError:
                raise NotFound("spec.pid", f"cannot read the mappings of process {pid}") from None
            self._views[pid] = view
        return view

    def forget(self, pid: int) -> None:
        self._views.pop(pid, None)
        self._words.pop(pid, None)
        self._data_words.pop(pid, None)
        self._hit_words.pop(pid, None)

    def _executable(self, pid: int, view: ProcessView) -> Module | None:
        try:
            exe = os.readlink(self._proc / str(pid) / "exe")
        except OSError:
            exe = view.executable
        exe = exe.removesuffix(" (deleted)")
        for mod in view.modules:
            if mod.path == exe:
                return mod
        return None

    # --- names -> addresses ------------------------------------------------------------
    def resolve(self, scope: Scope, pid: int, location: str, access: Access) -> Resolved:
        try:
            return self._resolve(pid, location, access)
        except BrokerError:
            raise
        except Exception as err:  # pyelftools on a binary it cannot parse: say so, not INTERNAL
            _log.warning("names_unreadable", pid=pid, location=location, error=repr(err))
            raise MissingDebugInfo(
                FIELD, f"{location!r}: the binaries' symbols or DWARF cannot be read: {err!r}"
            ) from None

    def prepare(self, pid: int, location: str, access: Access, report: Report) -> None:
        """Read and index what resolving ``location`` in ``pid`` reads, telling ``report``;
        runs on a worker thread so the event loop's ``resolve`` finds it all read (issue
        14). Never raises: ``resolve`` says what is wrong."""
        with self._preparing, contextlib.suppress(Exception):
            self._resolve(pid, location, access, report)

    def _resolve(
        self, pid: int, location: str, access: Access, report: Report | None = None
    ) -> Resolved:
        loc = parse(location)
        if loc.kind == "address":
            return Resolved(location=location, address=loc.address, length=0, by_name=False)
        view = self.view(pid, fresh=True, report=report)
        if loc.kind == "line":
            return self._resolve_line(pid, view, loc, access)
        modules = view.modules
        if loc.module:
            modules = view.named(loc.module)
            if not modules:
                mapped = ", ".join(sorted({m.basename for m in view.modules})) or "none"
                raise NotMappedYet(
                    FIELD, f"no module {loc.module!r} is mapped in process {pid} (mapped: {mapped})"
                )
        found: list[Resolved] = []
        for mod in modules:
            found += resolve_in_module(mod, loc, access, report)
        if len(found) > 1:
            listed = "; ".join(
                f"{r.module and os.path.basename(r.module)}!{r.symbol} at {r.address:#x}"
                for r in found[:10]
            )
            raise InvalidArgument(
                FIELD,
                f"{location!r} is ambiguous: {len(found)} candidates ({listed});"
                " name one as MODULE!SYMBOL",
            )
        if found:
            return found[0]
        exe = self._executable(pid, view)
        if exe is not None and not exe.image.has_symtab and not loc.module:
            raise MissingDebugInfo(
                FIELD, f"{loc.name!r} cannot be looked up: " + exe.image.missing_symtab()
            )
        where = f"module {loc.module!r}" if loc.module else f"the binaries of process {pid}"
        raise NotFound(FIELD, f"no symbol {loc.name!r} in {where}")

    def _resolve_line(self, pid: int, view: ProcessView, loc: Location, access: Access) -> Resolved:
        if access is not Access.EXEC:
            raise InvalidArgument(
                "spec.access", f"{loc.text!r} names an instruction: FILE:LINE is for exec"
            )
        hits: list[Resolved] = []
        with_lines = False
        exe = self._executable(pid, view)
        # The program first; line tables of separate debug files are not read (seconds for
        # libc). A file belongs to one binary: the first that has it answers.
        order = sorted(view.modules, key=lambda m: m is not exe)
        for mod in order:
            dwarf = mod.image.dwarf
            if dwarf is None or not mod.image.own_dwarf:
                continue
            with_lines = True
            at = dwarf.address_of_line(loc.file, loc.line)
            if at is None:
                continue
            value, line = at
            hits = [
                Resolved(
                    location=loc.text,
                    address=value + mod.bias,
                    length=0,
                    symbol=f"{os.path.basename(loc.file)}:{line}",
                    module=mod.path,
                    build_id=mod.image.build_id,
                    load_bias=mod.bias,
                    source=f"{os.path.basename(loc.file)}:{line}",
                )
            ]
            break
        if hits:
            return hits[0]
        if not with_lines:
            what = exe.image.missing_debug() if exe is not None else "no module has DWARF"
            raise MissingDebugInfo(FIELD, f"{loc.text!r} needs line tables (.debug_line): {what}")
        raise NotFound(FIELD, f"no code at {loc.text!r} in the binaries of process {pid}")

    # --- addresses -> words (the hit path) ------------------------------------------------
    def prepare_hits(self, pid: int, address: int, report: Report) -> None:
        with self._preparing, contextlib.suppress(Exception):
            view = self.view(pid, fresh=True, report=report)
            for mod in (view.module_at(address), self._executable(pid, view)):
                dwarf = mod.image.dwarf if mod is not None else None
                if mod is not None and dwarf is not None and mod.image.own_dwarf:
                    dwarf.line_of(0)  # indexes the line table, the one thing read lazily

    def describe_hit(self, pid: int, ip: int, address: int, access: Access | None) -> HitWords:
        cache = self._hit_words.get(pid)
        key = (ip, address, access is Access.EXEC)
        if cache is not None and (known := cache.get(key)) is not None:
            return known
        words = self._describe_hit(pid, ip, address, access)
        if words is not _NO_WORDS:
            self._hit_words.setdefault(pid, {})[key] = words
        return words

    def _describe_hit(self, pid: int, ip: int, address: int, access: Access | None) -> HitWords:
        try:
            words = self._words.setdefault(pid, {})
            if access is Access.EXEC:
                code = words.get(ip)
                if code is None:
                    code = words[ip] = self._code_words(pid, ip, ip)
                return HitWords(code[0], code[1], code[0])
            # A data breakpoint traps after the access (x86): the line is the one of the
            # instruction that made it, which ends at ip. Keyed apart from exec hits.
            code = words.get(-ip)
            if code is None:
                code = words[-ip] = self._code_words(pid, ip, ip - 1)
            data = self._data_words.setdefault(pid, {})
            name = data.get(address)
            if name is None:
                name = data[address] = self._data_name(pid, address)
            return HitWords(code[0], code[1], name)
        except Exception as err:  # the hit path never fails for want of words
            if pid not in self._warned:
                self._warned.add(pid)
                _log.warning("hit_words_failed", pid=pid, ip=hex(ip), error=repr(err))
            return _NO_WORDS

    def _module(self, pid: int, address: int) -> Module | None:
        view = self._views.get(pid)
        mod = view.module_at(address) if view is not None else None
        if mod is None:
            # Not in what we knew: maybe mapped since (dlopen). Read the mappings once.
            mod = self.view(pid, fresh=True).module_at(address)
        return mod

    def _code_words(self, pid: int, ip: int, line_ip: int) -> tuple[str, str]:
        mod = self._module(pid, ip)
        if mod is None:
            return "", ""
        value = ip - mod.bias
        found = mod.image.containing(value)
        name = f"{found[0].name}+{found[1]:#x}" if found is not None else ""
        dwarf = mod.image.dwarf
        own = dwarf is not None and mod.image.own_dwarf
        line = dwarf.line_of(line_ip - mod.bias) if own and dwarf is not None else ""
        return name, line

    def _data_name(self, pid: int, address: int) -> str:
        mod = self._module(pid, address)
        if mod is None:
            return ""
        found = mod.image.containing(address - mod.bias)
        if found is None:
            return ""
        sym, off = found
        return sym.name if off == 0 else f"{sym.name}+{off:#x}"
