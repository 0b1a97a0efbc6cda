"""Figure 9: memory under abuse, with the limits at their defaults (issue 12, item 7).

``hwbkptd --machine sim`` with its default limits (256 MiB memory budget, 1,024 sessions
and 1,024 streams per identity, 4,096-event hit buffers). One well-behaved client opens a
session, watches a simulated variable and reads its events. Then, from the same identity
(everyone on the local socket is "local"):

1. 1,000 sessions each watch the same variable and open an event stream they never read;
   the variable is written TOUCHES times, so every write is a hit for 1,001 sessions
   (without the budget: 1,000 x 4,096 buffered hits, about 1.8 GB).
2. 10,000 sessions are opened and abandoned (their leases run; the per-identity cap
   refuses most of them, RESOURCE_EXHAUSTED).

Measured: hwbkptd's VmRSS (peak of samples) against the same broker idle, in the same run;
how many of the well-behaved client's hits arrived. Target: RSS growth <= the memory
budget (256 MiB) and every hit of the well-behaved client delivered (none dropped).
A second broker with ``--max-sessions 100000`` opens all 10,000 abandoned sessions, so
only the memory budget bounds them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import grpc
import grpc.aio

from bench._broker import Broker
from bench._support import ratio, row
from hwbkpt._credentials import SESSION_TOKEN_KEY
from hwbkpt.v1 import broker_pb2, broker_pb2_grpc, sim_pb2, sim_pb2_grpc

__all__ = ["run"]

HOGS = 1000
ABANDONED = 10_000
TOUCHES = 2000
VAR = 0x601000
MIB = 1024  # KiB per MiB
BUDGET_MIB = 256


def _md(token: str) -> tuple[tuple[str, str], ...]:
    # The session's secret travels in call metadata (issue 12), never in a message.
    return ((SESSION_TOKEN_KEY, token),)


def _watch(pid: int) -> broker_pb2.SetBreakpointRequest:
    return broker_pb2.SetBreakpointRequest(
        spec=broker_pb2.BreakpointSpec(
            scope=broker_pb2.SCOPE_PROCESS,
            pid=pid,
            address=VAR,
            length=8,
            access=broker_pb2.ACCESS_WRITE,
        ),
    )


async def _good_reader(call: Any, counts: dict[str, int]) -> None:
    try:
        async for reply in call:
            for event in reply.events:
                kind = event.WhichOneof("kind")
                if kind == "hit":
                    counts["hits"] += 1
                elif kind == "hits_dropped":
                    counts["dropped"] += event.hits_dropped.count
    except grpc.aio.AioRpcError:
        pass


async def _abandon(b: broker_pb2_grpc.BrokerServiceAsyncStub, n: int) -> tuple[int, int]:
    opened = refused = 0
    for start in range(0, n, 100):
        calls = [
            b.OpenSession(broker_pb2.OpenSessionRequest(name=f"abandoned-{i}"))
            for i in range(start, min(start + 100, n))
        ]
        for result in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(result, grpc.aio.AioRpcError):
                assert result.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, result
                refused += 1
            else:
                opened += 1
    return opened, refused


async def _abuse(broker: Broker) -> dict[str, Any]:
    idle = broker.rss_kib()
    peak = idle
    async with grpc.aio.insecure_channel(broker.address) as channel:
        b = broker_pb2_grpc.BrokerServiceStub(channel)
        sim = sim_pb2_grpc.SimServiceStub(channel)
        spawned = await sim.SpawnProcess(sim_pb2.SpawnProcessRequest(threads=1))
        pid, tid = spawned.pid, spawned.tids[0]
        good = await b.OpenSession(broker_pb2.OpenSessionRequest(name="well-behaved"))
        await b.SetBreakpoint(_watch(pid), metadata=_md(good.token))
        counts = {"hits": 0, "dropped": 0}
        reader = asyncio.ensure_future(
            _good_reader(
                b.StreamEvents(broker_pb2.StreamEventsRequest(), metadata=_md(good.token)), counts
            )
        )
        hogs: list[Any] = []
        async with grpc.aio.insecure_channel(broker.address) as hog_channel:
            hb = broker_pb2_grpc.BrokerServiceStub(hog_channel)
            for i in range(HOGS):
                hog = await hb.OpenSession(broker_pb2.OpenSessionRequest(name=f"hog-{i}"))
                await hb.SetBreakpoint(_watch(pid), metadata=_md(hog.token))
                # Opened and never read: the broker's writes stop at flow control.
                hogs.append(
                    hb.StreamEvents(broker_pb2.StreamEventsRequest(), metadata=_md(hog.token))
                )
            await asyncio.sleep(1.0)
            t0 = time.monotonic()
            for n in range(TOUCHES):
                await sim.Touch(
                    sim_pb2.TouchRequest(
                        pid=pid,
                        tid=tid,
                        address=VAR,
                        access=broker_pb2.ACCESS_WRITE,
                        value=(n + 1).to_bytes(8, "little"),
                    )
                )
                if n % 100 == 0:
                    peak = max(peak, broker.rss_kib())
            touch_s = time.monotonic() - t0
            await asyncio.sleep(1.0)
            peak = max(peak, broker.rss_kib())
            opened, refused = await _abandon(b, ABANDONED)
            await asyncio.sleep(1.0)
            peak = max(peak, broker.rss_kib())
            alive = broker.alive()
            for call in hogs:
                call.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return {
        "idle_rss_kib": idle,
        "peak_rss_kib": peak,
        "good_hits": counts["hits"],
        "good_dropped": counts["dropped"],
        "touches": TOUCHES,
        "touch_s": touch_s,
        "abandoned_opened": opened,
        "abandoned_refused": refused,
        "alive": alive,
    }


async def _sessions_only(broker: Broker) -> dict[str, Any]:
    idle = broker.rss_kib()
    async with grpc.aio.insecure_channel(broker.address) as channel:
        opened, refused = await _abandon(broker_pb2_grpc.BrokerServiceStub(channel), ABANDONED)
        await asyncio.sleep(1.0)
        return {
            "idle_rss_kib": idle,
            "rss_kib": broker.rss_kib(),
            "opened": opened,
            "refused": refused,
        }


def run(quick: bool = False) -> dict[str, Any]:
    global TOUCHES
    if quick:
        TOUCHES = 300  # the full 2,000 take about 160 s on a 2-core VM (2 million hits)
    with Broker("sim") as broker:
        time.sleep(0.5)
        abuse = asyncio.run(_abuse(broker))
    with Broker("sim", "auto", "--max-sessions", "100000") as broker:
        time.sleep(0.5)
        sessions = asyncio.run(_sessions_only(broker))
    grown = (abuse["peak_rss_kib"] - abuse["idle_rss_kib"]) / MIB
    grown2 = (sessions["rss_kib"] - sessions["idle_rss_kib"]) / MIB
    rows = [
        row(
            f"RSS, {HOGS:,} never-read streams x {TOUCHES:,} hits each, then {ABANDONED:,} "
            "sessions abandoned (default limits)",
            f"{abuse['peak_rss_kib'] / MIB:.1f} MB peak (+{grown:.1f} MB); "
            f"{abuse['abandoned_opened']:,} abandoned opened, "
            f"{abuse['abandoned_refused']:,} refused",
            f"idle broker: {abuse['idle_rss_kib'] / MIB:.1f} MB",
            ratio(abuse["peak_rss_kib"], abuse["idle_rss_kib"]),
            f"growth <= {BUDGET_MIB} MB (the budget)",
            grown <= BUDGET_MIB and abuse["alive"],
        ),
        row(
            "the well-behaved client's hits during the abuse",
            f"{abuse['good_hits']:,} of {TOUCHES:,} ({abuse['good_dropped']:,} dropped)",
            "",
            "",
            "all",
            abuse["good_hits"] == TOUCHES,
        ),
        row(
            f"RSS, {ABANDONED:,} sessions abandoned, --max-sessions 100000 (budget only)",
            f"{sessions['rss_kib'] / MIB:.1f} MB (+{grown2:.1f} MB); "
            f"{sessions['opened']:,} opened, {sessions['refused']:,} refused",
            f"idle broker: {sessions['idle_rss_kib'] / MIB:.1f} MB",
            ratio(sessions["rss_kib"], sessions["idle_rss_kib"]),
            f"growth <= {BUDGET_MIB} MB",
            grown2 <= BUDGET_MIB,
        ),
    ]
    return {"rows": rows, "abuse": abuse, "sessions": sessions}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=1, default=str))
