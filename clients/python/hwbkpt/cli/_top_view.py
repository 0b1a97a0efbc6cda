"""What ``hwbkpt top`` shows, without a terminal: the latest slot map of each broker, hit
rates from the hit counts over a sliding window, and the recent news (displacements as they
happen), rendered as rich tables. Pure: fed updates and the time, it returns renderables."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from hwbkpt import models as m
from hwbkpt.cli._output import breakpoint_line, event_line

__all__ = ["NEWS_LINES", "RATE_WINDOW", "TopView", "news_text"]

#: Seconds over which a hit rate is averaged.
RATE_WINDOW = 5.0
#: News lines kept on screen (newest last).
NEWS_LINES = 12


def news_text(server: str, item: m.SessionNews, several: bool) -> str:
    """One line of news: ``HH:MM:SS ide#3 displaced by tracer#4(75) in tids 1234``."""
    when = item.event.time.astimezone().strftime("%H:%M:%S")
    who = f"{item.session_name}#{item.event.breakpoint_id}"
    p = item.event.payload
    where = f"[{server}] " if several else ""
    if isinstance(p, m.Displaced):
        tids = ",".join(map(str, p.tids)) or "-"
        by = f"{p.by_session}#{p.by_breakpoint_id}({p.by_priority})"
        text = f"{who} displaced by {by} in tids {tids}"
    elif isinstance(p, m.Restored):
        text = f"{who} restored in tids {','.join(map(str, p.tids)) or '-'}"
    elif isinstance(p, m.Removed):
        text = f"{who} removed ({p.reason})"
    else:
        rest = event_line(item.event).split(f"bp {item.event.breakpoint_id}", 1)[1].strip()
        text = f"{who} {item.event.kind}: {rest}"
    return f"{when} {where}{text}"


@dataclass
class _Broker:
    update: m.SlotMapUpdate | None = None
    #: (monotonic time, hits by breakpoint) samples within the rate window.
    samples: deque[tuple[float, dict[int, int]]] = field(default_factory=deque)
    error: str = ""


class TopView:
    def __init__(self, servers: list[str]) -> None:
        self._servers = servers
        self._brokers = {s: _Broker() for s in servers}
        self.news: deque[str] = deque(maxlen=NEWS_LINES)

    def apply(self, server: str, update: m.SlotMapUpdate, now: float) -> None:
        b = self._brokers[server]
        b.update, b.error = update, ""
        b.samples.append((now, dict(update.hits)))
        several = len(self._servers) > 1
        self.news.extend(news_text(server, item, several) for item in update.news)

    def failed(self, server: str, error: str) -> None:
        self._brokers[server].error = error

    def rate(self, server: str, breakpoint_id: int, now: float) -> float:
        """Hits per second of a request over the last RATE_WINDOW seconds."""
        samples = self._brokers[server].samples
        while len(samples) > 1 and samples[1][0] <= now - RATE_WINDOW:
            samples.popleft()
        if not samples:
            return 0.0
        first_time, first = samples[0]
        latest = samples[-1][1]
        # From the last sample at or before the window's start (or the first one) to now.
        span = max(now - first_time, 1.0)
        return (latest.get(breakpoint_id, 0) - first.get(breakpoint_id, 0)) / span

    def render(self, now: float) -> RenderableType:
        several = len(self._servers) > 1
        slots = Table(expand=False, title="slots", title_justify="left")
        for column in (("server",) if several else ()) + (
            "pid",
            "tid",
            "slot",
            "watches",
            "holder",
            "prio",
            "hits/s",
            "hits",
        ):
            slots.add_column(column, no_wrap=True)
        waiting = Table(expand=False, title="waiting", title_justify="left")
        for column in (("server",) if several else ()) + ("why", "request"):
            # A long request line folds onto the next line rather than losing its end.
            waiting.add_column(column, overflow="fold", no_wrap=column != "request")
        sessions: list[str] = []
        for server in self._servers:
            b = self._brokers[server]
            lead = (server,) if several else ()
            if b.error:
                slots.add_row(*lead, "-", "-", "-", Text(b.error, style="red"), "", "", "", "")
            if b.update is None:
                continue
            sessions.extend(name for _, name in b.update.sessions)
            for t in b.update.slot_map.threads:
                tid = "kernel" if t.tid == 0 else str(t.tid) + (" halted" if t.halted else "")
                pid = "all CPUs" if t.tid == 0 else str(t.pid)
                for s in t.slots:
                    slot = f"{s.pool}{s.index}"
                    if s.external:
                        slots.add_row(
                            *lead, pid, tid, slot, "held outside the broker", "", "", "", ""
                        )
                        continue
                    if s.chunk is None:
                        slots.add_row(
                            *lead, pid, tid, slot, Text("free", style="dim"), "", "", "", ""
                        )
                        continue
                    c = s.chunk
                    access = c.access.value if c.access is not None else "?"
                    watches = f"{c.address:#x}/{c.length} {access}"
                    for h in s.holders:
                        rate = self.rate(server, h.breakpoint_id, now)
                        hits = b.update.hits.get(h.breakpoint_id, 0)
                        slots.add_row(
                            *lead,
                            pid,
                            tid,
                            slot,
                            watches,
                            f"{h.session_name}#{h.breakpoint_id}",
                            str(h.priority),
                            f"{rate:.1f}",
                            str(hits),
                        )
                        watches = '"'
            for bp in b.update.slot_map.waiting:
                why = bp.pending_reason.value
                waiting.add_row(*lead, why, breakpoint_line(bp))
        head = Text.assemble(
            ("hwbkpt top", "bold"),
            f"  {datetime.now().strftime('%H:%M:%S')}  ",
            f"brokers {len(self._servers)}  sessions: {', '.join(sessions) or '-'}  ",
            ("q quits", "dim"),
        )
        news = Table(expand=False, title="news", title_justify="left", show_header=False)
        news.add_column("what happened", no_wrap=True)
        for line in self.news or ["(nothing yet)"]:
            news.add_row(line)
        return Group(head, slots, waiting, news)
