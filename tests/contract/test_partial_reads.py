"""Partial reads: load_messages(start, stop), tail(n) and message_count, on every backend."""

from __future__ import annotations

import time

import pytest

from agents_persist import AgentMessage, AgentStateSnapshot, Checkpointer, InvalidArgumentError, codec
from tests.spec import BackendSpec

BOUNDS = [None, 0, 1, 2, 7, 8, 9, 23, 24, 25, 100, -1, -2, -8, -9, -24, -25, -100]


def _grown(cp: Checkpointer, tid: str) -> list:  # type: ignore[type-arg]
    """A thread of 24 messages saved in batches of 1, 7 and 16, as chunked logs see them grow."""
    state = AgentStateSnapshot(messages=[AgentMessage.user("m0", metadata={"i": 0})])
    cp.save(tid, state)
    for count in (7, 16):
        start = len(state.messages)
        state.messages.extend(AgentMessage.assistant(f"m{i}", metadata={"i": i}) for i in range(start, start + count))
        cp.save(tid, state)
    return state.messages


def _bytes(messages: list) -> bytes:  # type: ignore[type-arg]
    return b"".join(codec.encode_messages(messages))


def test_every_slice_reads_exactly_what_list_slicing_gives(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "slices"
    messages = _grown(checkpointer, tid)
    assert checkpointer.message_count(tid) == 24
    for start in BOUNDS:
        for stop in BOUNDS:
            got = checkpointer.load_messages(tid, start, stop)
            assert _bytes(got) == _bytes(messages[start:stop]), (start, stop)
    for n in (0, 1, 5, 24, 30):
        assert _bytes(checkpointer.tail(tid, n)) == _bytes(messages[-n:] if n else [])
    assert _bytes(checkpointer.load_messages(tid)) == _bytes(messages)


def test_appended_messages_are_read_back_and_missing_threads_are_empty(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "appended"
    messages = _grown(checkpointer, tid)
    more = [AgentMessage.user(f"a{i}") for i in range(3)]
    checkpointer.append(tid, more)
    assert checkpointer.message_count(tid) == 27
    assert _bytes(checkpointer.tail(tid, 4)) == _bytes([messages[-1], *more])
    assert checkpointer.load_messages(prefix + "missing") == [] and checkpointer.message_count(prefix + "missing") == 0
    assert checkpointer.tail(prefix + "missing", 3) == []
    checkpointer.delete(tid)
    assert checkpointer.load_messages(tid) == [] and checkpointer.message_count(tid) == 0


def test_bad_bounds_are_refused_before_any_io(checkpointer: Checkpointer, prefix: str) -> None:
    for bad in ("1", 1.0, True):
        with pytest.raises(InvalidArgumentError):
            checkpointer.load_messages(prefix + "x", bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            checkpointer.load_messages(prefix + "x", None, bad)  # type: ignore[arg-type]
    for bad_n in (-1, "2", 2.0):
        with pytest.raises(InvalidArgumentError):
            checkpointer.tail(prefix + "x", bad_n)  # type: ignore[arg-type]


def test_expired_threads_have_no_messages(backend_spec: BackendSpec, prefix: str) -> None:
    cp = backend_spec.build(ttl=1.0)
    tid = prefix + "expiring"
    try:
        cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("soon gone")]))
        time.sleep(1.6)
        assert cp.load_messages(tid) == [] and cp.tail(tid, 1) == [] and cp.message_count(tid) == 0
    finally:
        cp.delete(tid)
        cp.close()
