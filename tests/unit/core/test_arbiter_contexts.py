"""hwbkptd.core.arbiter_contexts: the contexts placement works in (issue 10 item 2)."""

from __future__ import annotations

import pytest

from hwbkptd.core.arbiter_contexts import DEAD_THREADS_KEPT, Contexts
from hwbkptd.core.arbiter_types import SlotTable
from hwbkptd.core.model import CPU_CONTEXT

TABLE = SlotTable(pid=7, tid=1, generation=1, pools={}, external={})


def test_item10_cpu_context_is_there_and_is_no_thread() -> None:
    ctxs = Contexts()
    assert CPU_CONTEXT in ctxs
    assert not ctxs.is_thread(CPU_CONTEXT)
    assert ctxs.threads() == {}
    with pytest.raises(KeyError):
        ctxs.remove(CPU_CONTEXT)


def test_item10_threads_by_process_and_history_after_exit() -> None:
    ctxs = Contexts()
    ctxs.add(100, 101)
    ctxs.add(100, 102)
    assert ctxs.threads() == {101: 100, 102: 100}
    assert ctxs.all() == {CPU_CONTEXT, 101, 102}
    with pytest.raises(ValueError, match="tid"):
        ctxs.add(100, 101)
    ctxs[101].history[3] = TABLE
    ctxs.remove(101)
    assert 101 not in ctxs
    assert 3 in ctxs.history(101)
    assert ctxs.all() == {CPU_CONTEXT, 102}


def test_item10_only_recent_ended_threads_keep_history() -> None:
    ctxs = Contexts()
    for tid in range(1, DEAD_THREADS_KEPT + 2):
        ctxs.add(7, tid)
        ctxs[tid].history[1] = TABLE
        ctxs.remove(tid)
    assert dict(ctxs.history(DEAD_THREADS_KEPT + 1)) == {1: TABLE}
    assert dict(ctxs.history(2)) == {1: TABLE}
    assert dict(ctxs.history(1)) == {}  # the oldest ended thread is forgotten
