"""The session calls: OpenSession, ResumeSession, CloseSession, StreamEvents, and a
session's end (closed, lease expired): its requests removed and committed, the
threads it held halted resumed, the processes it took let go."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from hwbkptd.core import policy
from hwbkptd.core.audit import audit
from hwbkptd.core.broker_types import BrokerConfig, Identity, SessionInfo
from hwbkptd.core.errors import BrokerError, FailedPrecondition, InvalidArgument, PermissionDenied
from hwbkptd.core.events import Event, RemovedReason
from hwbkptd.core.limits import IdentityQuotas, MemoryBudget, check_hit_buffer
from hwbkptd.core.model import Action
from hwbkptd.core.mutations import Mutations
from hwbkptd.core.process_calls import ProcessCalls
from hwbkptd.core.sessions import Session, SessionTable
from hwbkptd.core.specs import check_name

__all__ = ["MAX_LEASE_SECONDS", "POLICY_RELOAD", "SessionCalls"]

#: The reason a request removed, or a session ended, by a reloaded policy gives.
POLICY_RELOAD: RemovedReason = "policy"

#: Upper bound for the lease a session may ask for when it opens (its hit buffer's is
#: a limit: ``Limits.max_hit_buffer``).
MAX_LEASE_SECONDS = 86_400.0


class SessionCalls:
    def __init__(
        self,
        *,
        sessions: SessionTable,
        config: BrokerConfig,
        mutations: Mutations,
        process_calls: ProcessCalls,
        stopping: Callable[[], bool],
        quotas: IdentityQuotas,
        budget: MemoryBudget,
    ) -> None:
        self._quotas = quotas
        self._budget = budget
        self._sessions = sessions
        self._config = config
        self._mutations = mutations
        self._process_calls = process_calls
        self._stopping = stopping

    def open(
        self, name: str, lease_seconds: float, hit_buffer: int, identity: Identity
    ) -> SessionInfo:
        limits = self._config.limits
        check_name(name, limits.max_name_length)
        if not 0 <= lease_seconds <= MAX_LEASE_SECONDS:
            raise InvalidArgument(
                "lease",
                f"must be 0 (default) to {MAX_LEASE_SECONDS:g} s, got {lease_seconds:g} s",
            )
        check_hit_buffer(hit_buffer, limits)
        if self._stopping():
            raise FailedPrecondition("the broker is shutting down")
        policy.check_session_count(identity, self._sessions.count_of(identity.name))
        self._quotas.check_session(identity.name)
        self._budget.check_session()
        session = self._sessions.open(
            name,
            identity=identity,
            lease_seconds=lease_seconds or self._config.lease_seconds,
            hit_buffer=min(hit_buffer or self._config.hit_buffer, limits.max_hit_buffer),
            retention=limits.replay_events,
        )
        self._quotas.session_opened(identity.name)
        audit("session_opened", session, lease_seconds=session.lease_seconds)
        return _session_info(session)

    def resume(self, token: str) -> SessionInfo:
        session = self._sessions.get(token)
        audit("session_resumed", session, last_seq=session.log.last_seq)
        return _session_info(session)

    async def close(self, token: str) -> None:
        await self._end_session(self._sessions.get(token), "session_closed")

    def events(self, token: str, after_seq: int = 0) -> AsyncIterator[Sequence[Event]]:
        """Batches of events numbered above ``after_seq``; a newer stream ends an older one."""
        session = self._sessions.get(token)
        if after_seq < 0:
            raise InvalidArgument("after_seq", f"must not be negative, got {after_seq}")
        return session.stream(after_seq)

    async def reauthorize(self, rights_of: Callable[[Identity], Identity | None]) -> list[str]:
        """Apply a reloaded policy to the sessions open now. A session whose identity is
        gone is ended (its stream ends PERMISSION_DENIED). Every other session takes its
        identity's new rights and keeps what they still allow: each request they no longer
        allow (its scope, priority, halting or target) is removed with the reason
        ``policy``, and a process it attached but may no longer touch is let go.
        The ids of the sessions ended."""
        ended: list[str] = []
        resume: list[int] = []
        for session in list(self._sessions):
            new = rights_of(session.identity)
            if new is None:
                ended.append(session.id)
                gone = PermissionDenied(
                    f"identity {session.identity.name!r} is no longer in the broker's policy"
                )
                await self._end_session(session, POLICY_RELOAD, gone)
                continue
            session.identity = new
            removed = [rid for rid in sorted(session.requests) if not self._allows(new, rid)]
            for rid in removed:
                self._mutations.remove(rid, POLICY_RELOAD)
            released = self._release_halts(session) if not new.may_halt else []
            resume += released
            let_go = self._process_calls.drop_disallowed(session)
            if removed or released or let_go:
                audit(
                    "session_reauthorized", session, removed=removed, resumed=released,
                    let_go=let_go,
                )  # fmt: skip
        # Placement first, so a released thread cannot trap on what is being removed.
        await self._mutations.commit()
        for tid in resume:
            await self._mutations.resume_thread(tid)
        await self._mutations.sweep()
        return ended

    def _allows(self, identity: Identity, rid: int) -> bool:
        record = self._mutations.requests.get(rid)
        if record is None:
            return True
        request = record.request
        if not policy.still_allowed(
            identity, request.is_kernel, request.priority, request.action is Action.HALT
        ):
            return False
        pid = record.accepted.pid
        return not pid or self._process_calls.may_touch(identity, pid)

    def _release_halts(self, session: Session) -> list[int]:
        """Let go of the threads the session holds halted; those nobody else holds, to resume."""
        halts = self._mutations.halts
        return [t for t in halts.held_by(session.id) if halts.release(t, session.id)]

    def lease_ended(self, session: Session) -> None:
        self._mutations.spawn(self._end_session(session, "lease"))

    async def _end_session(
        self, session: Session, reason: RemovedReason, error: BrokerError | None = None
    ) -> None:
        if session.ending:
            return
        self._sessions.remove(session)
        self._quotas.session_ended(session.identity.name)
        for rid in sorted(session.requests):
            self._mutations.remove(rid, reason)
        held = self._mutations.halts.held_by(session.id)
        resume = [tid for tid in held if self._mutations.halts.release(tid, session.id)]
        # Placement first, so a released thread cannot trap on what is being removed.
        await self._mutations.commit()
        for tid in resume:
            await self._mutations.resume_thread(tid)
        await self._process_calls.session_ended(session.id)
        session.close(error)
        audit("session_ended", session, reason=reason, resumed=resume)
        await self._mutations.sweep()


def _session_info(session: Session) -> SessionInfo:
    return SessionInfo(
        session_id=session.id,
        name=session.name,
        token=session.token,
        lease_seconds=session.lease_seconds,
        last_seq=session.log.last_seq,
    )
