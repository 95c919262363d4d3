"""Redis partial reads (``scripts/slice.lua``): only the slice's bytes cross the wire, and every layout reads right.

The position index (key ``…:pos`` and head field ``s``, see
:mod:`agents_persist.backends.redis.layout`) is kept by the save script;
threads stored without it (older releases: one entry per message, or packed
entries without an index) are read by position or whole.
"""

from __future__ import annotations

import time
from typing import Iterator, List

import pytest
import redis

from agents_persist import AgentMessage, AgentStateSnapshot, RedisCheckpointer, codec
from agents_persist.backends.redis.layout import positions_key
from tests.backends.redis.support import checkpointer_on, messages
from tests.backends.redis.test_packed_log import write_old_layout
from tests.spec import BackendSpec

BOUNDS = [None, 0, 1, 5, 63, 64, 65, 150, 299, 300, 301, 10_000, -1, -2, -20, -64, -65, -299, -300, -301]


@pytest.fixture(params=["redis", "redis_cluster"])
def any_cp(request: pytest.FixtureRequest, prefix: str) -> Iterator[RedisCheckpointer]:
    yield from checkpointer_on(request.getfixturevalue(f"{request.param}_spec"), prefix)


def _blobs(items: List[AgentMessage]) -> bytes:
    return b"".join(codec.encode_messages(items))


def _check_grid(cp: RedisCheckpointer, tid: str, expected: List[AgentMessage], bounds: List[object] = BOUNDS) -> None:
    for start in bounds:
        for stop in bounds:
            got = cp.load_messages(tid, start, stop)  # type: ignore[arg-type]
            assert _blobs(got) == _blobs(expected[start:stop]), (start, stop)  # type: ignore[misc]


def test_tail_of_ten_thousand_messages_reads_only_the_last_twenty(any_cp: RedisCheckpointer, prefix: str) -> None:
    """Grown by appends (compacted many times), then rewritten by a staged save: the reply holds only 20 messages."""
    tid = prefix + "long"
    history = messages(9_000)
    any_cp.save(tid, AgentStateSnapshot(messages=history))  # staged: entries of about 1 MiB
    for i in range(9_000, 10_000, 10):  # 100 appends: compactions along the way
        more = messages(10, i)
        any_cp.append(tid, more)
        history += more
    store = any_cp.store
    client = store.connection.client()
    assert client.llen(store._keys(tid)[1]) > 1
    stored = store.read_messages(tid, -20, None)
    assert stored is not None and (stored.first, stored.count) == (9_980, 20)
    assert stored.messages == _blobs(history[-20:]), "the script returned exactly the 20 messages' bytes"
    assert _blobs(any_cp.tail(tid, 20)) == _blobs(history[-20:])
    middle = store.read_messages(tid, 4_321, 4_331)
    assert middle is not None and middle.messages == _blobs(history[4_321:4_331])
    assert _blobs(any_cp.load_messages(tid)) == _blobs(history)
    assert any_cp.message_count(tid) == 10_000


def test_slices_across_entries_after_compaction_and_rewrites(any_cp: RedisCheckpointer, prefix: str) -> None:
    tid = prefix + "grid"
    state = AgentStateSnapshot(messages=messages(3))
    any_cp.save(tid, state)
    for i in range(3, 300, 3):  # 99 appends: more than 64 entries, so compacted
        state.messages.extend(messages(3, i))
        any_cp.save(tid, state)
    _check_grid(any_cp, tid, state.messages)
    stored = any_cp.store.read_messages(tid, 100, 103)
    assert stored is not None and isinstance(stored.messages, bytes) and stored.count == 3, "read through the index"
    state.messages[10] = AgentMessage.user("edited")  # a rewrite builds the index anew
    any_cp.save(tid, state)
    _check_grid(any_cp, tid, state.messages, [None, 0, 10, 11, -1, -290, 299, 300])


def test_threads_of_the_one_entry_per_message_layout_are_read_by_position(
    cp: RedisCheckpointer, raw: "redis.Redis", prefix: str
) -> None:
    tid = prefix + "old"
    write_old_layout(raw, cp, tid, 300)
    stored = cp.store.read_messages(tid, -20, None)
    assert stored is not None and isinstance(stored.messages, list) and (stored.first, stored.count) == (280, 20)
    _check_grid(cp, tid, messages(300))
    cp.append(tid, messages(2, 300))  # an append onto an unindexed log keeps no index
    assert raw.exists(positions_key(cp.store.key_prefix, tid)) == 0
    _check_grid(cp, tid, messages(302), [None, 0, 299, -3, -1])


def test_packed_threads_without_an_index_are_read_whole_until_a_rewrite_indexes_them(
    cp: RedisCheckpointer, raw: "redis.Redis", prefix: str
) -> None:
    tid = prefix + "unindexed"
    state = AgentStateSnapshot(messages=messages(40))
    cp.save(tid, state)
    for i in range(40, 60, 4):
        state.messages.extend(messages(4, i))
        cp.save(tid, state)
    head_key, _ = cp.store._keys(tid)
    raw.hdel(head_key, "s")  # as the release before the index stored it
    raw.delete(positions_key(cp.store.key_prefix, tid))
    stored = cp.store.read_messages(tid, -5, None)
    assert stored is not None and (stored.first, stored.count) == (0, 60), "read whole"
    _check_grid(cp, tid, state.messages, [None, 0, 7, 40, 44, -1, -5, -60])
    state.messages.extend(messages(3, 60))
    cp.save(tid, state)  # an append: still no index
    assert cp.store.read_messages(tid, -1, None).count == 63  # type: ignore[union-attr]
    state.messages[0] = AgentMessage.user("rewritten")
    cp.save(tid, state)
    stored = cp.store.read_messages(tid, -1, None)
    assert stored is not None and (stored.first, stored.count) == (62, 1), "the rewrite built the index"
    _check_grid(cp, tid, state.messages, [None, 0, 7, 40, -1, -5, -63])


def test_an_index_a_writer_of_an_older_release_did_not_update_is_not_used(
    cp: RedisCheckpointer, raw: "redis.Redis", prefix: str
) -> None:
    """An older release's append pushes an entry and bumps v, n and k, leaving s and pos behind."""
    tid = prefix + "stale"
    cp.save(tid, AgentStateSnapshot(messages=messages(10)))
    head_key, log_key = cp.store._keys(tid)
    extra = messages(2, 10)
    raw.rpush(log_key, _blobs(extra))
    raw.hset(head_key, mapping={"v": 2, "n": 12, "k": 2})
    stored = cp.store.read_messages(tid, -3, None)
    assert stored is not None and (stored.first, stored.count) == (0, 12)
    assert _blobs(cp.tail(tid, 3)) == _blobs((messages(10) + extra)[-3:])


def test_the_index_expires_with_the_thread_and_is_deleted_with_it(redis_spec: BackendSpec, prefix: str) -> None:
    cp = RedisCheckpointer.from_url(redis_spec.url, ttl=60.0)
    tid = prefix + "ttl"
    try:
        cp.save(tid, AgentStateSnapshot(messages=messages(5)))
        cp.append(tid, messages(2, 5))
        client = cp.store.connection.client()
        key = positions_key(cp.store.key_prefix, tid)
        assert 0 < client.pttl(key) <= 61_000 and client.strlen(key) == 4 * 7
        assert abs(client.pttl(key) - client.pttl(cp.store._keys(tid)[0])) < 1000
        assert cp.delete(tid) and client.exists(key) == 0
    finally:
        cp.delete(tid)
        cp.close()


def test_an_expired_thread_is_not_sliced(redis_spec: BackendSpec, prefix: str) -> None:
    cp = RedisCheckpointer.from_url(redis_spec.url, ttl=1.0)
    tid = prefix + "gone"
    try:
        cp.save(tid, AgentStateSnapshot(messages=messages(5)))
        time.sleep(1.3)
        assert cp.tail(tid, 2) == [] and cp.load_messages(tid, 1, 3) == []
    finally:
        cp.delete(tid)
        cp.close()
