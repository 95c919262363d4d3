"""max_snapshot_bytes: a snapshot too large is refused before anything is written, on every backend."""

from __future__ import annotations

import pytest

from agents_persist import AgentMessage, AgentStateSnapshot, InMemoryCheckpointer, SnapshotTooLargeError, codec, from_url
from tests.spec import BackendSpec

LIMIT = 4096


def _stored(cp, tid):  # type: ignore[no-untyped-def]
    state = cp.load(tid)
    assert state is not None
    return state.version, b"".join(codec.encode_messages(state.messages)), codec.encode_head(state)


def test_a_save_over_the_limit_writes_nothing(backend_spec: BackendSpec, prefix: str) -> None:
    cp = backend_spec.build(max_snapshot_bytes=LIMIT)
    tid = prefix + "size"
    try:
        assert cp.max_snapshot_bytes == LIMIT
        state = AgentStateSnapshot(messages=[AgentMessage.user("x" * 1000)])
        cp.save(tid, state)
        before = _stored(cp, tid)
        state.messages.append(AgentMessage.assistant("y" * LIMIT))
        with pytest.raises(SnapshotTooLargeError) as info:
            cp.save(tid, state)
        assert info.value.thread_id == tid and "max_snapshot_bytes=4096" in str(info.value)
        assert _stored(cp, tid) == before  # nothing written, not even the head
        with pytest.raises(SnapshotTooLargeError):
            cp.append(tid, [AgentMessage.user("z" * (LIMIT + 1))])
        with pytest.raises(SnapshotTooLargeError):
            cp.save(prefix + "size-new", AgentStateSnapshot(metadata={"blob": "m" * LIMIT}))
        assert _stored(cp, tid) == before and not cp.exists(prefix + "size-new")
        state.messages[-1] = AgentMessage.assistant("fits")  # the same snapshot, now under the limit
        assert cp.save(tid, state) == 2
    finally:
        cp.delete(tid)
        cp.close()


def test_the_default_limit_is_the_backends_and_refuses_50_mb(backend_spec: BackendSpec, prefix: str) -> None:
    cp = backend_spec.build()
    try:
        assert cp.max_snapshot_bytes == cp.store.default_max_snapshot_bytes
        assert 8 * 1024 * 1024 <= cp.max_snapshot_bytes < 50_000_000
        with pytest.raises(SnapshotTooLargeError):
            cp.save(prefix + "huge", AgentStateSnapshot(messages=[AgentMessage.tool("r" * 50_000_000, tool_call_id="c")]))
        assert not cp.exists(prefix + "huge")
    finally:
        cp.close()


def test_the_limit_is_a_common_url_option() -> None:
    with from_url("memory://?max_snapshot_bytes=2048") as cp:
        assert cp.max_snapshot_bytes == 2048
    with InMemoryCheckpointer(max_snapshot_bytes=None) as cp:
        assert cp.max_snapshot_bytes == 32 * 1024 * 1024
