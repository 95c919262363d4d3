"""Redis: list_threads over the index (order, repairs, deleted threads) and damaged data."""

from __future__ import annotations

import logging
import time

import pytest
import redis

import agents_persist.backends.redis.client as redis_client
import agents_persist.backends.redis.index as redis_index
from agents_persist import (
    AgentStateSnapshot,
    CorruptSnapshotError,
    RedisCheckpointer,
)
from tests.backends.redis.support import messages
from tests.servers import RedisServer

# ---------------------------------------------------------------------- list_threads and the index


def test_list_threads_orders_equal_times_by_thread_id_across_batches(
    cp: RedisCheckpointer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"{prefix}{name}" for name in ("b", "é", "a", "ab", "z", "😀", "A")]
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: 1_700_000_000.25)
        for tid in ids:
            cp.save(tid, AgentStateSnapshot())
    cp.save(prefix + "newest", AgentStateSnapshot())
    monkeypatch.setattr(redis_index, "LIST_BATCH", 2)
    monkeypatch.setattr(redis_index, "MAX_LIST_BATCH", 2)
    expected = [prefix + "newest"] + sorted(ids, reverse=True)
    pages = []
    cursor = None
    while True:
        page = cp.list_threads(prefix, limit=3, cursor=cursor)
        pages.append([i.thread_id for i in page])
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [tid for page in pages for tid in page] == expected
    assert [len(page) for page in pages] == [3, 3, 2]


def test_list_threads_with_a_rare_prefix_reads_through_the_index(private_server: RedisServer) -> None:
    cp = RedisCheckpointer.from_url(private_server.url)
    try:
        for i in range(300):
            cp.save(f"other-{i:03d}", AgentStateSnapshot())
            if i % 100 == 0:
                cp.save(f"rare-{i:03d}", AgentStateSnapshot())
        first = cp.list_threads("rare-", limit=2)
        assert first.next_cursor is not None
        rest = cp.list_threads("rare-", limit=2, cursor=first.next_cursor)
        assert [i.thread_id for i in [*first.threads, *rest.threads]] == ["rare-200", "rare-100", "rare-000"]
        assert rest.next_cursor is None
        assert [i.thread_id for i in cp.iter_threads("rare-", page_size=2)] == ["rare-000", "rare-100", "rare-200"]
        assert len(list(cp.iter_threads(page_size=1000))) == 303
    finally:
        cp.close()


def test_list_threads_trusts_heads_and_repairs_the_index(cp: RedisCheckpointer, raw: "redis.Redis", prefix: str) -> None:
    ids = [prefix + str(i) for i in range(4)]
    for tid in ids:
        cp.save(tid, AgentStateSnapshot(messages=messages(1)))
        time.sleep(0.002)
    updated = cp.store.index.keys[0]
    true_scores = {tid: raw.zscore(updated, tid) for tid in ids}
    # Stale entries as a crashed or overtaken cluster writer could leave them:
    raw.zadd(updated, {ids[0]: true_scores[ids[3]] + 100})  # too new
    raw.zadd(updated, {ids[3]: true_scores[ids[0]] - 100})  # too old
    raw.zadd(updated, {prefix + "ghost": true_scores[ids[2]]})  # no head at all
    listed = list(cp.list_threads(prefix))
    assert [i.thread_id for i in listed] == list(reversed(ids))
    assert [i.updated_at.timestamp() for i in listed] == pytest.approx([true_scores[t] for t in reversed(ids)])
    assert {tid: raw.zscore(updated, tid) for tid in ids} == true_scores
    assert raw.zscore(updated, prefix + "ghost") is None


def test_list_threads_never_shows_deleted_threads(cp: RedisCheckpointer, raw: "redis.Redis", prefix: str) -> None:
    for i in range(5):
        cp.save(f"{prefix}{i}", AgentStateSnapshot())
    cp.delete(prefix + "1")
    raw.delete(*cp.store._keys(prefix + "3"))  # removed behind the library's back
    assert [i.thread_id for i in cp.list_threads(prefix)] == [prefix + "4", prefix + "2", prefix + "0"]
    assert raw.zscore(cp.store.index.keys[0], prefix + "3") is None


# ---------------------------------------------------------------------- iter_threads and the index by ID


def test_iter_threads_walks_by_utf8_id_across_batches_and_prefixes(cp: RedisCheckpointer, prefix: str) -> None:
    names = ["b", "é", "a", "ab", "z", "😀", "A", "a~", "aa", "ä", "a b"]
    for name in names:
        cp.save(prefix + name, AgentStateSnapshot(messages=messages(1)))
    expected = sorted(prefix + name for name in names)
    assert expected == sorted(expected, key=lambda tid: tid.encode("utf-8"))  # str order is UTF-8 byte order
    for page_size in (1, 3, 100):
        assert [i.thread_id for i in cp.iter_threads(prefix, page_size=page_size)] == expected
    under_a = [t for t in expected if t.startswith(prefix + "a")]
    assert [i.thread_id for i in cp.iter_threads(prefix + "a", page_size=2)] == under_a
    assert list(cp.iter_threads(prefix + "nothing-here")) == []
    page = cp.store.scan(prefix, prefix + "a", 3, time.time())
    assert [i.thread_id for i in page] == [t for t in expected if t > prefix + "a"][:3]
    assert [i.message_count for i in page] == [1, 1, 1]


def test_iter_threads_trusts_heads_and_repairs_the_index(cp: RedisCheckpointer, raw: "redis.Redis", prefix: str) -> None:
    updated, _, ids = cp.store.index.keys
    live = [prefix + str(i) for i in range(3)]
    for tid in live:
        cp.save(tid, AgentStateSnapshot())
    raw.zadd(ids, {prefix + "0ghost": 0})  # an entry without a thread
    raw.zadd(ids, {prefix + "1ghost": 0})
    raw.zadd(updated, {prefix + "1ghost": 5.0})  # ... with an update-time entry too
    raw.delete(*cp.store._keys(live[2]))  # removed behind the library's back
    assert [i.thread_id for i in cp.iter_threads(prefix, page_size=1)] == live[:2]
    for gone in (prefix + "0ghost", prefix + "1ghost", live[2]):
        assert raw.zscore(ids, gone) is None and raw.zscore(updated, gone) is None
    assert [raw.zscore(ids, tid) for tid in live[:2]] == [0, 0]


def test_an_index_repair_never_removes_what_a_save_since_recorded(cp: RedisCheckpointer, raw: "redis.Redis", prefix: str) -> None:
    """The repair of an ID entry names the update-time score it saw before reading the head (none: '')."""
    keys = cp.store.index.keys
    tid = prefix + "raced"
    raw.zadd(keys[2], {tid: 0})
    raw.zadd(keys[0], {tid: 7.0})  # a save recorded itself after the walk saw no update-time entry
    cp.store.connection.run(redis_client.INDEX_FIX, keys, ("r", tid, "", ""))
    assert raw.zscore(keys[2], tid) == 0
    cp.store.connection.run(redis_client.INDEX_FIX, keys, ("r", tid, "6.0", ""))
    assert raw.zscore(keys[2], tid) == 0
    cp.store.connection.run(redis_client.INDEX_FIX, keys, ("r", tid, "7.0", ""))
    assert raw.zscore(keys[2], tid) is None and raw.zscore(keys[0], tid) is None


def test_threads_saved_before_the_index_by_id_are_found(
    private_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Threads saved by an older version have no ID entry: the first walk copies them from the index by update time."""
    cp = RedisCheckpointer.from_url(private_server.url)
    raw = redis.Redis.from_url(private_server.url)
    try:
        old = [f"old-{i:04d}" for i in range(5000)]
        for tid in old[:50]:
            cp.save(tid, AgentStateSnapshot())
        updated, _, ids = cp.store.index.keys
        scores = dict(raw.zrange(updated, 0, -1, withscores=True))
        # The rest as an older version left them: head, log and update-time entry only.
        pipe = raw.pipeline()
        for tid in old[50:]:
            pipe.hset(cp.store._keys(tid)[0], mapping={"v": 1, "n": 0, "d": bytes(16), "h": b"\x01\x80", "u": "1.5"})
            pipe.zadd(updated, {tid: 1.5})
        pipe.delete(ids)
        pipe.execute()
        assert len(scores) == 50
        cp.save("new", AgentStateSnapshot())
        with caplog.at_level(logging.INFO, logger="agents_persist.backends.redis"):
            walked = [i.thread_id for i in cp.iter_threads(page_size=700)]
        assert walked == sorted([*old, "new"])
        assert raw.zcard(ids) == raw.zcard(updated) == len(old) + 1
        assert sum("index by thread ID" in r.getMessage() for r in caplog.records) == 1
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="agents_persist.backends.redis"):
            assert len(list(cp.iter_threads("old-00"))) == 100
        assert not caplog.records, "a complete index is not copied again"
    finally:
        cp.close()
        raw.close()


# ---------------------------------------------------------------------- damaged data


def test_lost_log_is_reported_then_healed_by_the_next_save(cp: RedisCheckpointer, raw: "redis.Redis", prefix: str) -> None:
    tid = prefix + "evicted"
    state = AgentStateSnapshot(messages=messages(5))
    cp.save(tid, state)
    raw.delete(cp.store._keys(tid)[1])  # as an allkeys-* eviction policy might
    with pytest.raises(CorruptSnapshotError) as info:
        cp.load(tid)
    assert info.value.thread_id == tid
    state.messages.extend(messages(1, 5))
    cp.save(tid, state)  # the append's precondition fails on the log length: the log is rewritten
    loaded = cp.load(tid)
    assert loaded is not None and loaded.messages == state.messages


def test_corrupt_head_raises_on_load_and_is_skipped_by_listings(
    cp: RedisCheckpointer, raw: "redis.Redis", prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11: one corrupt thread never breaks listing the others (it is logged and left out)."""
    tid = prefix + "corrupt"
    cp.save(tid, AgentStateSnapshot())
    cp.save(prefix + "fine", AgentStateSnapshot())
    raw.hset(cp.store._keys(tid)[0], "n", "many")
    for call in (lambda: cp.load(tid), lambda: cp.exists(tid)):
        with pytest.raises(CorruptSnapshotError) as info:
            call()
        assert info.value.thread_id == tid
    assert [i.thread_id for i in cp.list_threads(prefix)] == [prefix + "fine"]
    assert [i.thread_id for i in cp.iter_threads(prefix)] == [prefix + "fine"]
    assert "corrupt" in caplog.text
    assert cp.delete(tid) is True


@pytest.mark.timeout(60)
def test_iter_threads_repairs_an_index_order_someone_broke(
    private_server: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ZRANGEBYLEX is ordered only when all scores are equal: a foreign write of other scores must not loop the walk."""
    cp = RedisCheckpointer.from_url(private_server.url)
    raw = redis.Redis.from_url(private_server.url)
    try:
        ids = [f"t{i:03d}" for i in range(40)]
        for tid in ids:
            cp.save(tid, AgentStateSnapshot())
        by_id = cp.store.index.keys[2]
        for i, tid in enumerate(ids):  # scores that order the set backwards
            raw.zadd(by_id, {tid.encode(): float(len(ids) - i)})
        monkeypatch.setattr(redis_index, "MAX_LIST_BATCH", 4)
        with caplog.at_level(logging.WARNING):
            walked = [info.thread_id for info in cp.iter_threads(page_size=4)]
        assert walked == ids  # repaired (every score back to 0), then walked in order, each once
        assert any("out of order" in record.getMessage() for record in caplog.records)
        assert {score for _, score in raw.zrange(by_id, 0, -1, withscores=True)} == {0.0}
    finally:
        raw.flushall()
        raw.close()
        cp.close()
