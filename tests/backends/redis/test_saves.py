"""Redis: key layout, appends that send only new messages, staged whole logs, TTL on every key."""

from __future__ import annotations

import time

import pytest
import redis
from redis.crc import key_slot

from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    BackendUnavailableError,
    ConflictError,
    RedisCheckpointer,
)
from agents_persist.backends.redis import RedisStore
from agents_persist.backends.redis.store import STAGE_MIN_BYTES
from agents_persist.codec import encode_head, encode_messages
from tests.backends.redis.support import messages
from tests.servers import RedisServer
from tests.spec import BackendSpec

# ---------------------------------------------------------------------- key layout


def test_keys_are_hash_tagged_by_escaped_thread_id(cp: RedisCheckpointer, raw: "redis.Redis", prefix: str) -> None:
    ids = [prefix + "plain", prefix + "a}b", prefix + "a%7Db", prefix + "{x}", prefix + "50%"]
    for tid in ids:
        cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user(tid)]))
    seen_heads = set()
    for tid in ids:
        head_key, log_key = cp.store._keys(tid)
        tag = head_key[head_key.index("{") + 1 : head_key.index("}")]
        assert "{" not in tag and "}" not in tag
        assert tag.replace("%7B", "{").replace("%7D", "}").replace("%25", "%") == tid
        assert key_slot(head_key.encode()) == key_slot(log_key.encode())
        assert raw.exists(head_key) and raw.exists(log_key)
        seen_heads.add(head_key)
        loaded = cp.load(tid)
        assert loaded is not None and loaded.messages[0].content == tid
    assert len(seen_heads) == len(ids), "escaping must keep distinct thread IDs apart"
    assert cp.store._keys("a")[0] == "agents:{a}:head" and cp.store.index.keys[0] == "agents:{%index}:updated"


def test_key_prefix_separates_stores(redis_spec: BackendSpec, prefix: str) -> None:
    one = RedisCheckpointer.from_url(redis_spec.url, key_prefix="one:")
    two = RedisCheckpointer.from_url(redis_spec.url + "?key_prefix=two:")
    try:
        one.save(prefix + "t", AgentStateSnapshot(metadata={"who": 1}))
        assert two.load(prefix + "t") is None
        assert [i.thread_id for i in one.list_threads(prefix)] == [prefix + "t"]
        assert list(two.list_threads(prefix)) == []
    finally:
        one.delete(prefix + "t")
        one.close()
        two.close()


# ---------------------------------------------------------------------- what a save sends


def _input_bytes(client: "redis.Redis") -> int:
    return int(client.info("stats")["total_net_input_bytes"])


def test_appending_two_messages_sends_only_those(private_server: RedisServer) -> None:
    cp = RedisCheckpointer.from_url(private_server.url)
    raw = redis.Redis.from_url(private_server.url)
    try:
        state = AgentStateSnapshot(messages=messages(1000))
        cp.save("long", state)
        log_bytes = sum(len(blob) for blob in raw.lrange(cp.store._keys("long")[1], 0, -1))
        new = messages(2, 1000)
        payload = sum(map(len, encode_messages(new))) + len(encode_head(state))

        before = _input_bytes(raw)
        state.messages.extend(new)
        cp.save("long", state)
        sent = _input_bytes(raw) - before

        assert payload < sent < payload + 1024, f"an append of 2 messages sent {sent} bytes"
        assert sent * 50 < log_bytes
        # A fresh snapshot holding the same prefix also appends (the prefix digest is cached).
        fresh = AgentStateSnapshot(messages=[m.replace() for m in state.messages] + messages(2, 1002))
        before = _input_bytes(raw)
        cp.save("long", fresh, force=True)
        assert _input_bytes(raw) - before < payload + 1024
        # Editing an early message rewrites the whole log, and the counter sees it.
        fresh.messages[0] = AgentMessage.user("edited")
        before = _input_bytes(raw)
        cp.save("long", fresh)
        assert _input_bytes(raw) - before > log_bytes
        loaded = cp.load("long")
        assert loaded is not None and loaded.messages == fresh.messages and loaded.version == 4
    finally:
        cp.close()
        raw.close()


def test_save_and_load_are_one_round_trip_each(private_server: RedisServer) -> None:
    cp = RedisCheckpointer.from_url(private_server.url)
    raw = redis.Redis.from_url(private_server.url)
    try:
        state = AgentStateSnapshot(messages=messages(10))
        cp.save("rt", state)
        raw.config_resetstat()
        state.messages.extend(messages(2, 10))
        cp.save("rt", state)
        cp.load("rt")
        stats = raw.info("commandstats")
        top_level = {
            name: value["calls"]
            for name, value in stats.items()
            if name in ("cmdstat_evalsha", "cmdstat_multi", "cmdstat_exec", "cmdstat_eval")
        }
        assert top_level == {"cmdstat_evalsha": 1, "cmdstat_multi": 1, "cmdstat_exec": 1}
    finally:
        cp.close()
        raw.close()


def test_long_logs_are_written_in_chunks(cp: RedisCheckpointer, prefix: str) -> None:
    tid = prefix + "huge"
    many = [AgentMessage.user(str(i)) for i in range(10_000)]  # more than Lua's unpack limit at once
    cp.save(tid, AgentStateSnapshot(messages=many))
    loaded = cp.load(tid)
    assert loaded is not None and loaded.messages == many


#: Messages of about 120 bytes enough for a whole log to be staged.
BULK = STAGE_MIN_BYTES // 100


def test_whole_logs_are_staged_then_renamed_and_leave_nothing_behind(
    private_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cp = RedisCheckpointer.from_url(private_server.url)
    raw = redis.Redis.from_url(private_server.url)

    def renames() -> int:
        return int(raw.info("commandstats").get("cmdstat_rename", {}).get("calls", 0))

    try:
        cp.save("warm", AgentStateSnapshot())  # loads the script: a staged save needs it cached
        state = AgentStateSnapshot(messages=messages(BULK))
        assert cp.save("bulk", state) == 1  # a new thread: staged
        assert renames() == 1
        state.messages[0] = AgentMessage.user("edited")
        assert cp.save("bulk", state) == 2  # a rewrite: staged
        assert renames() == 2
        state.messages.extend(messages(2, BULK))
        assert cp.save("bulk", state) == 3  # an append: inline
        assert renames() == 2
        loaded = cp.load("bulk")
        assert loaded is not None and loaded.messages == state.messages

        with pytest.raises(ConflictError):
            cp.save("bulk", AgentStateSnapshot(messages=messages(BULK)), expected_version=1)
        raw.script_flush()
        assert cp.save("other", AgentStateSnapshot(messages=messages(BULK))) == 1  # NOSCRIPT: saved inline
        # A staging list that is not what this save pushed is never renamed into place.
        monkeypatch.setattr(RedisStore, "_stage_key", staticmethod(lambda log_key: log_key + ":stage:fixed"))
        raw.rpush(cp.store._keys("third")[1] + ":stage:fixed", b"stray")
        assert cp.save("third", AgentStateSnapshot(messages=messages(BULK))) == 1
        third = cp.load("third")
        assert third is not None and third.messages == messages(BULK)

        assert raw.keys("*:stage:*") == []
        loaded = cp.load("bulk")
        assert loaded is not None and loaded.version == 3 and loaded.messages == state.messages
    finally:
        cp.close()
        raw.close()


def test_out_of_memory_is_unavailable_writes_nothing_and_quotes_no_content(private_server: RedisServer) -> None:
    cp = RedisCheckpointer.from_url(private_server.url)
    raw = redis.Redis.from_url(private_server.url)
    try:
        cp.save("full", AgentStateSnapshot(messages=messages(3)))
        state = cp.load("full")
        assert state is not None
        raw.config_set("maxmemory-policy", "noeviction")
        raw.config_set("maxmemory", 1)
        secret = [AgentMessage.user(f"private words {i}") for i in range(40)]
        state.messages.extend(secret[:2])
        for save in (
            lambda: cp.save("full", state),  # an append
            lambda: cp.save("full", AgentStateSnapshot(messages=secret[:3]), force=True),  # a rewrite
            lambda: cp.save("fresh", AgentStateSnapshot(messages=secret)),  # a staged new thread
        ):
            with pytest.raises(BackendUnavailableError) as info:
                save()
            assert "private words" not in str(info.value) and "maxmemory" in str(info.value)
        raw.config_set("maxmemory", 0)
        loaded = cp.load("full")
        assert loaded is not None and loaded.messages == messages(3) and loaded.version == 1
        assert cp.load("fresh") is None
        assert raw.keys("*:stage:*") == []
    finally:
        cp.close()
        raw.close()


# ---------------------------------------------------------------------- TTL


def test_ttl_is_set_on_every_key_and_cleared_by_a_save_without_ttl(
    redis_spec: BackendSpec, raw: "redis.Redis", prefix: str
) -> None:
    tid = prefix + "ttl"
    with_ttl = RedisCheckpointer.from_url(redis_spec.url, ttl=30)
    without = RedisCheckpointer.from_url(redis_spec.url)
    try:
        with_ttl.save(tid, AgentStateSnapshot(messages=messages(3)))
        head_key, log_key = with_ttl.store._keys(tid)
        for key in (head_key, log_key):
            assert 29_000 < raw.pttl(key) <= 30_000
        assert raw.zscore(with_ttl.store.index.keys[1], tid) is not None
        info = with_ttl.list_threads(prefix).threads[0]
        assert info.expires_at is not None and 29 < info.expires_at.timestamp() - time.time() <= 30

        without.save(tid, AgentStateSnapshot(messages=messages(4)), force=True)
        assert raw.pttl(head_key) == -1 and raw.pttl(log_key) == -1
        assert raw.hget(head_key, "e") is None
        assert raw.zscore(with_ttl.store.index.keys[1], tid) is None
        assert without.list_threads(prefix).threads[0].expires_at is None
    finally:
        without.delete(tid)
        with_ttl.close()
        without.close()


def test_expired_threads_leave_the_index(private_server: RedisServer) -> None:
    short = RedisCheckpointer.from_url(private_server.url, ttl=0.2)
    keep = RedisCheckpointer.from_url(private_server.url)
    raw = redis.Redis.from_url(private_server.url)
    updated, expires, ids = short.store.index.keys
    try:
        for i in range(3):
            short.save(f"gone-{i}", AgentStateSnapshot())
        keep.save("kept", AgentStateSnapshot())
        time.sleep(0.35)
        # Listing skips them (Redis has dropped their keys) and removes their entries.
        assert [i.thread_id for i in keep.list_threads()] == ["kept"]
        assert raw.zrange(updated, 0, -1) == [b"kept"] and raw.zcard(expires) == 0
        assert raw.zrange(ids, 0, -1) == [b"kept"]

        for i in range(3):
            short.save(f"gone-{i}", AgentStateSnapshot())
        time.sleep(0.35)
        assert keep.purge_expired() == 3
        assert raw.zrange(updated, 0, -1) == [b"kept"] and raw.zcard(expires) == 0
        assert raw.zrange(ids, 0, -1) == [b"kept"]

        for i in range(3):
            short.save(f"gone-{i}", AgentStateSnapshot())
        time.sleep(0.35)
        keep.save("kept", AgentStateSnapshot(metadata={"again": True}), force=True)  # a save sweeps expired entries on the way
        assert raw.zrange(updated, 0, -1) == [b"kept"] and raw.zcard(expires) == 0
        assert raw.zrange(ids, 0, -1) == [b"kept"]
        assert keep.purge_expired() == 0
    finally:
        short.close()
        keep.delete("kept")
        keep.close()
        raw.close()
