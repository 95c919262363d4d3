"""Redis: the packed log (one entry per save, compacted), threads of the old layout, and garbage under a thread's keys."""

from __future__ import annotations

import time

import pytest
import redis

from agents_persist import AgentMessage, AgentStateSnapshot, CorruptSnapshotError, RedisCheckpointer
from agents_persist.codec import encode_head, encode_messages
from tests.backends.redis.support import messages


def write_old_layout(raw: "redis.Redis", cp: RedisCheckpointer, thread_id: str, count: int) -> None:
    """A thread as the release before packed logs stored it: one list entry per message, no ``k`` field."""
    from tests.old_release import old_release_digest

    blobs = encode_messages(messages(count))
    head_key, log_key = cp.store._keys(thread_id)
    raw.hset(
        head_key,
        mapping={
            "v": 3,
            "n": count,
            "d": old_release_digest(blobs),
            "h": encode_head(AgentStateSnapshot(metadata={"old": True})),
            "u": repr(time.time()),
            "g": 77,
        },
    )
    raw.rpush(log_key, *blobs)


def test_old_layout_loads_and_moves_to_the_packed_layout_on_its_next_save(
    cp: RedisCheckpointer, raw: "redis.Redis", prefix: str
) -> None:
    tid = prefix + "old"
    write_old_layout(raw, cp, tid, 300)
    state = cp.load(tid)
    assert state is not None and state.messages == messages(300) and state.metadata == {"old": True}
    state.messages.extend(messages(2, 300))
    assert cp.save(tid, state) == 4
    head_key, log_key = cp.store._keys(tid)
    assert int(raw.hget(head_key, "k")) == raw.llen(log_key) < 302, "the save moved the thread to the packed layout"
    for i in range(302, 302 + 2 * 70, 2):  # enough appends to compact
        state.messages.extend(messages(2, i))
        cp.save(tid, state)
    assert raw.llen(log_key) <= 64 and int(raw.hget(head_key, "k")) == raw.llen(log_key)
    loaded = cp.load(tid)
    assert loaded is not None and loaded.messages == messages(442) and loaded.version == 4 + 70


def test_each_append_is_one_log_entry_and_loads_join_them(cp: RedisCheckpointer, raw: "redis.Redis", prefix: str) -> None:
    tid = prefix + "packed"
    state = AgentStateSnapshot(messages=messages(50))
    cp.save(tid, state)
    for i in range(3):
        cp.append(tid, [AgentMessage.user(f"a{i}"), AgentMessage.user(f"b{i}")])
    assert raw.llen(cp.store._keys(tid)[1]) == 4
    loaded = cp.load(tid)
    assert loaded is not None and len(loaded.messages) == 56


@pytest.mark.parametrize("part", ["head", "log"])
def test_wrong_key_types_are_corrupt_and_can_be_repaired(
    cp: RedisCheckpointer, raw: "redis.Redis", prefix: str, part: str
) -> None:
    tid = prefix + "wrongtype"
    cp.save(tid, AgentStateSnapshot(messages=messages(3)))
    key = cp.store._keys(tid)[0 if part == "head" else 1]
    raw.delete(key)
    raw.set(key, b"garbage")
    with pytest.raises(CorruptSnapshotError) as info:
        cp.load(tid)
    assert info.value.thread_id == tid and part in str(info.value)
    if part == "head":
        with pytest.raises(CorruptSnapshotError):
            cp.exists(tid)
    assert cp.save(tid, AgentStateSnapshot(messages=messages(2)), force=True) >= 1
    loaded = cp.load(tid)
    assert loaded is not None and loaded.messages == messages(2)
    raw.delete(key)
    raw.set(key, b"garbage")
    assert cp.delete(tid) in (True, False)
    assert cp.load(tid) is None


@pytest.mark.parametrize(
    "field,value",
    [("v", b"nan"), ("v", b"9" * 40), ("n", b"-1"), ("u", b"inf"), ("u", b"1e300"), ("e", b"nan"), ("d", b"short"), ("k", b"x")],
)
def test_garbage_scalars_are_corrupt_everywhere_and_a_forced_save_repairs(
    cp: RedisCheckpointer, raw: "redis.Redis", prefix: str, field: str, value: bytes
) -> None:
    tid = prefix + "scalar"
    cp.save(tid, AgentStateSnapshot(messages=messages(3)))
    raw.hset(cp.store._keys(tid)[0], field, value)
    with pytest.raises(CorruptSnapshotError):
        cp.load(tid)
    assert cp.save(tid, AgentStateSnapshot(messages=messages(1)), force=True) >= 1
    loaded = cp.load(tid)
    assert loaded is not None and loaded.messages == messages(1)
