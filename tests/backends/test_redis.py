"""What only the Redis backend has: key layout, appends that send only new messages,
the list index, TTL on every key, recovery from restarts and hangs, fork safety, URLs.

Tests that restart, pause or reconfigure a server start their own throwaway
``redis-server``; the others use the session server of ``tests/fixtures/redis.py``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest
import redis
from redis.crc import key_slot

import agents_persist.backends.redis as redis_backend
from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    BackendUnavailableError,
    ConfigurationError,
    ConflictError,
    CorruptSnapshotError,
    RedisCheckpointer,
    from_url,
)
from agents_persist.codec import encode_head, encode_messages
from tests.servers import RedisServer
from tests.spec import BackendSpec

FAST_TIMEOUT = 1.0
#: A failing call may spend one connect and one reply timeout, plus scheduling slack.
DEADLINE = 2 * FAST_TIMEOUT + 0.75


def messages(count: int, start: int = 0) -> List[AgentMessage]:
    return [AgentMessage.user(f"message {i}: " + "x" * 100) for i in range(start, start + count)]


def increment(state: AgentStateSnapshot) -> None:
    state.metadata["n"] = state.metadata.get("n", 0) + 1
    state.messages.append(AgentMessage.user(f"+1 #{state.metadata['n']}"))


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A throwaway server this test may flush, reconfigure, pause or kill."""
    server = RedisServer.start(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def persistent_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A throwaway server that fsyncs its append-only file on every write."""
    server = RedisServer.start(tmp_path, extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    try:
        yield server
    finally:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)
        server.stop()


@pytest.fixture
def raw(redis_spec: BackendSpec) -> Iterator["redis.Redis"]:
    client = redis.Redis.from_url(redis_spec.url)
    yield client
    client.close()


@pytest.fixture
def cp(redis_spec: BackendSpec, prefix: str) -> Iterator[RedisCheckpointer]:
    checkpointer = RedisCheckpointer.from_url(redis_spec.url)
    yield checkpointer
    for info in list(checkpointer.iter_threads(prefix)):
        checkpointer.delete(info.thread_id)
    checkpointer.close()


# ---------------------------------------------------------------------- key layout


def test_keys_are_hash_tagged_by_escaped_thread_id(cp: RedisCheckpointer, raw: "redis.Redis", prefix: str) -> None:
    ids = [prefix + "plain", prefix + "a}b", prefix + "a%7Db", prefix + "{x}", prefix + "50%"]
    for tid in ids:
        cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user(tid)]))
    seen_heads = set()
    for tid in ids:
        head_key, log_key = cp._keys(tid)
        tag = head_key[head_key.index("{") + 1 : head_key.index("}")]
        assert "{" not in tag and "}" not in tag
        assert tag.replace("%7B", "{").replace("%7D", "}").replace("%25", "%") == tid
        assert key_slot(head_key.encode()) == key_slot(log_key.encode())
        assert raw.exists(head_key) and raw.exists(log_key)
        seen_heads.add(head_key)
        loaded = cp.load(tid)
        assert loaded is not None and loaded.messages[0].content == tid
    assert len(seen_heads) == len(ids), "escaping must keep distinct thread IDs apart"
    assert cp._keys("a")[0] == "agents:{a}:head" and cp._index_keys[0] == "agents:{%index}:updated"


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
        log_bytes = sum(len(blob) for blob in raw.lrange(cp._keys("long")[1], 0, -1))
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


def test_whole_logs_are_staged_then_renamed_and_leave_nothing_behind(
    private_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cp = RedisCheckpointer.from_url(private_server.url)
    raw = redis.Redis.from_url(private_server.url)

    def renames() -> int:
        return int(raw.info("commandstats").get("cmdstat_rename", {}).get("calls", 0))

    try:
        cp.save("warm", AgentStateSnapshot())  # loads the script: a staged save needs it cached
        state = AgentStateSnapshot(messages=messages(100))
        assert cp.save("bulk", state) == 1  # a new thread: staged
        assert renames() == 1
        state.messages[0] = AgentMessage.user("edited")
        assert cp.save("bulk", state) == 2  # a rewrite: staged
        assert renames() == 2
        state.messages.extend(messages(2, 100))
        assert cp.save("bulk", state) == 3  # an append: inline
        assert renames() == 2
        loaded = cp.load("bulk")
        assert loaded is not None and loaded.messages == state.messages

        with pytest.raises(ConflictError):
            cp.save("bulk", AgentStateSnapshot(messages=messages(100)), expected_version=1)
        raw.script_flush()
        assert cp.save("other", AgentStateSnapshot(messages=messages(50))) == 1  # NOSCRIPT: saved inline
        # A staging list that is not what this save pushed is never renamed into place.
        monkeypatch.setattr(RedisCheckpointer, "_stage_key", staticmethod(lambda log_key: log_key + ":stage:fixed"))
        raw.rpush(cp._keys("third")[1] + ":stage:fixed", b"stray")
        assert cp.save("third", AgentStateSnapshot(messages=messages(40))) == 1
        third = cp.load("third")
        assert third is not None and third.messages == messages(40)

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
        head_key, log_key = with_ttl._keys(tid)
        for key in (head_key, log_key):
            assert 29_000 < raw.pttl(key) <= 30_000
        assert raw.zscore(with_ttl._index_keys[1], tid) is not None
        info = with_ttl.list_threads(prefix).threads[0]
        assert info.expires_at is not None and 29 < info.expires_at.timestamp() - time.time() <= 30

        without.save(tid, AgentStateSnapshot(messages=messages(4)), force=True)
        assert raw.pttl(head_key) == -1 and raw.pttl(log_key) == -1
        assert raw.hget(head_key, "e") is None
        assert raw.zscore(with_ttl._index_keys[1], tid) is None
        assert without.list_threads(prefix).threads[0].expires_at is None
    finally:
        without.delete(tid)
        with_ttl.close()
        without.close()


def test_expired_threads_leave_the_index(private_server: RedisServer) -> None:
    short = RedisCheckpointer.from_url(private_server.url, ttl=0.2)
    keep = RedisCheckpointer.from_url(private_server.url)
    raw = redis.Redis.from_url(private_server.url)
    updated, expires = short._index_keys
    try:
        for i in range(3):
            short.save(f"gone-{i}", AgentStateSnapshot())
        keep.save("kept", AgentStateSnapshot())
        time.sleep(0.35)
        # Listing skips them (Redis has dropped their keys) and removes their entries.
        assert [i.thread_id for i in keep.list_threads()] == ["kept"]
        assert raw.zrange(updated, 0, -1) == [b"kept"] and raw.zcard(expires) == 0

        for i in range(3):
            short.save(f"gone-{i}", AgentStateSnapshot())
        time.sleep(0.35)
        assert keep.purge_expired() == 3
        assert raw.zrange(updated, 0, -1) == [b"kept"] and raw.zcard(expires) == 0

        for i in range(3):
            short.save(f"gone-{i}", AgentStateSnapshot())
        time.sleep(0.35)
        keep.save("kept", AgentStateSnapshot(metadata={"again": True}))  # a save sweeps expired entries on the way
        assert raw.zrange(updated, 0, -1) == [b"kept"] and raw.zcard(expires) == 0
        assert keep.purge_expired() == 0
    finally:
        short.close()
        keep.delete("kept")
        keep.close()
        raw.close()


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
    monkeypatch.setattr(redis_backend, "LIST_BATCH", 2)
    monkeypatch.setattr(redis_backend, "MAX_LIST_BATCH", 2)
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
        assert [i.thread_id for i in cp.iter_threads("rare-", page_size=2)] == ["rare-200", "rare-100", "rare-000"]
        assert len(list(cp.iter_threads(page_size=1000))) == 303
    finally:
        cp.close()


def test_list_threads_trusts_heads_and_repairs_the_index(cp: RedisCheckpointer, raw: "redis.Redis", prefix: str) -> None:
    ids = [prefix + str(i) for i in range(4)]
    for tid in ids:
        cp.save(tid, AgentStateSnapshot(messages=messages(1)))
        time.sleep(0.002)
    updated = cp._index_keys[0]
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
    raw.delete(*cp._keys(prefix + "3"))  # removed behind the library's back
    assert [i.thread_id for i in cp.list_threads(prefix)] == [prefix + "4", prefix + "2", prefix + "0"]
    assert raw.zscore(cp._index_keys[0], prefix + "3") is None


# ---------------------------------------------------------------------- damaged data


def test_lost_log_is_reported_then_healed_by_the_next_save(cp: RedisCheckpointer, raw: "redis.Redis", prefix: str) -> None:
    tid = prefix + "evicted"
    state = AgentStateSnapshot(messages=messages(5))
    cp.save(tid, state)
    raw.delete(cp._keys(tid)[1])  # as an allkeys-* eviction policy might
    with pytest.raises(CorruptSnapshotError) as info:
        cp.load(tid)
    assert info.value.thread_id == tid
    state.messages.extend(messages(1, 5))
    cp.save(tid, state)  # the append's precondition fails on the log length: the log is rewritten
    loaded = cp.load(tid)
    assert loaded is not None and loaded.messages == state.messages


def test_corrupt_head_raises_corrupt_snapshot_error(cp: RedisCheckpointer, raw: "redis.Redis", prefix: str) -> None:
    tid = prefix + "corrupt"
    cp.save(tid, AgentStateSnapshot())
    raw.hset(cp._keys(tid)[0], "n", "many")
    for call in (lambda: cp.load(tid), lambda: cp.list_threads(prefix)):
        with pytest.raises(CorruptSnapshotError) as info:
            call()
        assert info.value.thread_id == tid
    assert cp.delete(tid) is True


# ---------------------------------------------------------------------- outages


def test_server_crash_and_restart_mid_run(persistent_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """Kill -9 the server while a thread keeps updating: errors are BackendUnavailableError,
    none takes longer than the timeout, and after the restart the same checkpointer
    goes on with every acknowledged update intact."""
    cp = RedisCheckpointer.from_url(persistent_server.url, timeout=FAST_TIMEOUT)
    big = AgentStateSnapshot(messages=messages(1000), metadata={"big": True})
    cp.save("big", big)
    acked = [0]
    errors: List[BaseException] = []
    slowest = [0.0]
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            start = time.monotonic()
            try:
                cp.update("counter", increment)
                acked[0] += 1
            except Exception as exc:  # noqa: BLE001 - every error is checked below
                errors.append(exc)
                slowest[0] = max(slowest[0], time.monotonic() - start)
                time.sleep(0.02)

    def wait_for(predicate: Any, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        wait_for(lambda: acked[0] >= 20, "updates before the crash")
        persistent_server.kill()
        wait_for(lambda: len(errors) >= 5, "errors while the server is down")
        acked_while_down = acked[0]
        with caplog.at_level(logging.INFO, logger="agents_persist.backends.redis"):
            persistent_server.start_again()
            wait_for(lambda: acked[0] >= acked_while_down + 20, "updates after the restart")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert errors and all(isinstance(exc, BackendUnavailableError) for exc in errors), errors[:3]
    assert slowest[0] < DEADLINE
    final = cp.load("counter")
    assert final is not None
    n = final.metadata["n"]
    # An update whose reply was lost in the crash may have landed; none acknowledged is lost.
    assert acked[0] <= n <= acked[0] + len(errors)
    assert [m.content for m in final.messages] == [f"+1 #{i}" for i in range(1, n + 1)]
    assert final.version == n
    again = cp.load("big")
    assert again is not None and again.messages == big.messages and again.metadata == {"big": True}
    assert any("script cache" in record.getMessage() for record in caplog.records), "EVALSHA after restart must reload"
    cp.close()


def test_hung_server_times_out_then_recovers(persistent_server: RedisServer) -> None:
    cp = RedisCheckpointer.from_url(persistent_server.url, timeout=FAST_TIMEOUT)
    cp.save("t", AgentStateSnapshot(metadata={"v": 1}))
    assert persistent_server.pid is not None
    os.kill(persistent_server.pid, signal.SIGSTOP)
    try:
        for call in (lambda: cp.load("t"), lambda: cp.save("t", AgentStateSnapshot(), force=True), lambda: cp.list_threads()):
            start = time.monotonic()
            with pytest.raises(BackendUnavailableError) as info:
                call()
            assert time.monotonic() - start < DEADLINE
            assert "Timeout" in str(info.value)
    finally:
        os.kill(persistent_server.pid, signal.SIGCONT)
    loaded = cp.load("t")
    assert loaded is not None and loaded.version in (1, 2)  # the save sent into the hang may have run
    assert cp.save("t", AgentStateSnapshot(metadata={"v": 3}), force=True) == loaded.version + 1
    cp.close()


def test_script_cache_flush_is_survived(private_server: RedisServer) -> None:
    cp = RedisCheckpointer.from_url(private_server.url)
    raw = redis.Redis.from_url(private_server.url)
    try:
        assert cp.save("s", AgentStateSnapshot()) == 1
        raw.script_flush()
        assert cp.save("s", AgentStateSnapshot()) == 2
        assert raw.script_exists(redis_backend._WRITE.sha) == [True]
        assert cp.delete("s") is True
    finally:
        cp.close()
        raw.close()


def test_exhausted_pool_waits_at_most_the_timeout(private_server: RedisServer) -> None:
    cp = RedisCheckpointer.from_url(private_server.url, max_connections=1, timeout=0.3)
    try:
        cp.save("p", AgentStateSnapshot())
        pool = cp._redis().connection_pool
        held = pool.get_connection()
        start = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            cp.load("p")
        assert 0.25 < time.monotonic() - start < 1.5
        pool.release(held)
        assert cp.load("p") is not None
    finally:
        cp.close()


# ---------------------------------------------------------------------- fork safety


def test_forked_child_gets_its_own_connection_and_parent_keeps_its_own(private_server: RedisServer) -> None:
    cp = RedisCheckpointer.from_url(private_server.url)
    try:
        cp.update("f", increment)
        parent_id = cp._redis().client_id()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.close(read_end)
                child_id = cp._redis().client_id()
                for _ in range(10):
                    cp.update("f", increment)
                os.write(write_end, str(child_id).encode())
                code = 0 if child_id != parent_id else 3
            finally:
                os._exit(code)
        os.close(write_end)
        _, status = os.waitpid(pid, 0)
        child_id = int(os.read(read_end, 100) or b"0")
        os.close(read_end)
        assert os.waitstatus_to_exitcode(status) == 0
        assert child_id not in (0, parent_id)
        # The parent's pooled socket survived the child: same server-side client, still working.
        assert cp._redis().client_id() == parent_id
        cp.update("f", increment)
        final = cp.load("f")
        assert final is not None and final.metadata["n"] == 12
    finally:
        cp.close()


# ---------------------------------------------------------------------- construction and URLs


def test_url_database_credentials_and_options(private_server: RedisServer) -> None:
    raw = redis.Redis.from_url(private_server.url)
    raw.acl_setuser("agent", enabled=True, passwords=["+s3cret-pw"], keys=["*"], commands=["+@all"])
    base = f"redis://agent:s3cret-pw@127.0.0.1:{private_server.port}/3"
    cp = from_url(base + "?key_prefix=app:&ttl=60&timeout=2&connect_timeout=0.5&max_connections=7")
    try:
        assert isinstance(cp, RedisCheckpointer)
        assert (cp.key_prefix, cp.ttl, cp.timeout, cp.connect_timeout, cp.max_connections) == ("app:", 60.0, 2.0, 0.5, 7)
        assert "s3cret-pw" not in repr(cp) and "***" in repr(cp)
        cp.save("db3", AgentStateSnapshot())
        raw_db3 = redis.Redis(port=private_server.port, db=3)
        assert raw_db3.exists("app:{db3}:head") and not raw.exists("app:{db3}:head")
        raw_db3.close()
        assert RedisCheckpointer.from_url(base + "?key_prefix=app:", key_prefix="win:").key_prefix == "win:"

        wrong = from_url(base.replace("s3cret-pw", "wrong-pw"))
        with pytest.raises(BackendUnavailableError) as info:
            wrong.load("db3")
        assert "wrong-pw" not in str(info.value) and "s3cret-pw" not in str(info.value)
        wrong.close()
    finally:
        cp.delete("db3")
        cp.close()
        raw.close()


def test_rediss_url_uses_tls() -> None:
    cp = RedisCheckpointer.from_url("rediss://user:pw@127.0.0.1:6380/0?ssl_cert_reqs=none")
    pool = cp._redis().connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
    assert "pw@" not in repr(cp)
    cp.close()


def test_bad_configuration_is_refused(redis_spec: BackendSpec) -> None:
    client = redis.Redis.from_url(redis_spec.url)
    with pytest.raises(ConfigurationError):
        RedisCheckpointer()
    with pytest.raises(ConfigurationError):
        RedisCheckpointer(redis_spec.url, client=client)
    with pytest.raises(ConfigurationError):
        RedisCheckpointer(redis_spec.url, key_prefix="a{b}:")
    with pytest.raises(ConfigurationError):
        RedisCheckpointer(redis_spec.url + "?key_prefix=x:")  # query options need from_url
    with pytest.raises(ConfigurationError):
        RedisCheckpointer.from_url(redis_spec.url + "?ttl=soon")
    with pytest.raises(ConfigurationError):
        RedisCheckpointer(client=redis.Redis.from_url(redis_spec.url, decode_responses=True))
    with pytest.raises(ConfigurationError):
        RedisCheckpointer(client=client, max_connections=3)
    with pytest.raises(ConfigurationError):
        RedisCheckpointer("redis+cluster://127.0.0.1:7000/2")
    client.close()


def test_given_client_is_used_and_never_closed(redis_spec: BackendSpec, prefix: str) -> None:
    client = redis.Redis.from_url(redis_spec.url)
    client_id = client.client_id()
    cp = RedisCheckpointer(client=client, key_prefix="given:")
    cp.save(prefix + "c", AgentStateSnapshot())
    assert client.exists(f"given:{{{prefix}c}}:head")
    cp.delete(prefix + "c")
    cp.close()
    assert client.client_id() == client_id, "close() must not touch a client it did not create"
    client.close()


def test_module_imports_without_redis_and_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import agents_persist.backends.redis as m\n"
        "from agents_persist import ConfigurationError\n"
        "try:\n"
        "    m.RedisCheckpointer('redis://localhost')\n"
        "except ConfigurationError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install agents_persist[redis]" in out.stdout
