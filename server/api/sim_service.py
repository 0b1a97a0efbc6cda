"""``hwbkpt.v1.SimService``: drives the simulated machine's processes, threads and accesses.

Only a simulated machine has these knobs; on a native machine every call is
FAILED_PRECONDITION. The sim reports thread life-cycle and hits to the broker
itself; this service only relays the call and, for a touch, names the requests
that held the trapping slot.
"""

from __future__ import annotations

import asyncio

import structlog

from hwbkpt.v1 import sim_pb2, sim_pb2_grpc
from hwbkptd.api import convert
from hwbkptd.api.status import Context, guard
from hwbkptd.arch.sim import SimMechanism
from hwbkptd.core.broker import Broker
from hwbkptd.core.errors import FailedPrecondition, InvalidArgument

__all__ = ["BIRTHS_PER_TURN", "MAX_SPAWN_THREADS", "SimService"]

#: One call may not create an unbounded number of simulated threads.
MAX_SPAWN_THREADS = 1024
#: Thread births between two turns of the event loop in SpawnProcess.
BIRTHS_PER_TURN = 4

_log = structlog.get_logger("hwbkptd.api")


class SimService(sim_pb2_grpc.SimServiceServicer):
    def __init__(self, broker: Broker, sim: SimMechanism | None) -> None:
        self._broker = broker
        self._simulated = sim

    @property
    def _sim(self) -> SimMechanism:
        if self._simulated is None:
            raise FailedPrecondition("the sim service needs --machine sim")
        return self._simulated

    @guard
    async def SpawnProcess(
        self, request: sim_pb2.SpawnProcessRequest, context: Context
    ) -> sim_pb2.SpawnProcessResponse:
        sim = self._sim
        threads = request.threads or 1
        if threads > MAX_SPAWN_THREADS:
            raise InvalidArgument("threads", f"at most {MAX_SPAWN_THREADS} threads per call")
        pid, tids = sim.new_process(threads)
        for start in range(0, threads, BIRTHS_PER_TURN):
            if start:
                # Every birth is a placement: let other calls in between, as a real
                # process's clones reach the broker one by one.
                await asyncio.sleep(0)
            for tid in tids[start : start + BIRTHS_PER_TURN]:
                sim.start_thread(pid, tid)
        _log.info("sim process spawned", pid=pid, tids=list(tids))
        return sim_pb2.SpawnProcessResponse(pid=pid, tids=tids)

    @guard
    async def SpawnThread(
        self, request: sim_pb2.SpawnThreadRequest, context: Context
    ) -> sim_pb2.SpawnThreadResponse:
        tid = self._sim.spawn_thread(request.pid)
        _log.info("sim thread spawned", pid=request.pid, tid=tid)
        return sim_pb2.SpawnThreadResponse(tid=tid)

    @guard
    async def EndThread(
        self, request: sim_pb2.EndThreadRequest, context: Context
    ) -> sim_pb2.EndThreadResponse:
        self._sim.end_thread(request.tid)
        _log.info("sim thread ended", tid=request.tid)
        return sim_pb2.EndThreadResponse()

    @guard
    async def EndProcess(
        self, request: sim_pb2.EndProcessRequest, context: Context
    ) -> sim_pb2.EndProcessResponse:
        self._sim.end_process(request.pid, request.exit_code)
        _log.info("sim process ended", pid=request.pid, exit_code=request.exit_code)
        return sim_pb2.EndProcessResponse()

    @guard
    async def Touch(self, request: sim_pb2.TouchRequest, context: Context) -> sim_pb2.TouchResponse:
        sim = self._sim
        access = convert.sim_access_from_proto(request.access, "access")
        reports = sim.touch(
            request.pid,
            request.tid,
            request.address,
            access,
            value=request.value,
            size=request.size,
            ip=request.ip,
        )
        ids: list[int] = []
        for report in reports:
            for bid in self._broker.attribute(report):
                if bid not in ids:
                    ids.append(bid)
        return sim_pb2.TouchResponse(breakpoint_ids=ids, halted=any(r.halted for r in reports))
