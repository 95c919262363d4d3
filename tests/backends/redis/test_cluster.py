"""What only Redis Cluster mode has: slots, the two-step index, node outages, cluster URLs.

The contract suite (including the 4 processes x 4 threads x 50 ``update()``
race and the hypothesis state machine) already runs against the session
cluster as backend ``redis_cluster``; these tests cover the rest.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Dict, Iterator, List, Union

import pytest
import redis
import redis.cluster
from redis.crc import key_slot

import agents_persist.backends.redis.client as redis_client
from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    BackendUnavailableError,
    ConfigurationError,
    RedisCheckpointer,
    from_url,
)
from tests.backends.redis.support import checkpointer_on
from tests.servers import ExternalServer, RedisCluster
from tests.spec import BackendSpec

FAST_TIMEOUT = 1.0


def node_port_of(client: "redis.cluster.RedisCluster", key: str) -> int:
    return int(client.get_node_from_key(key).port)


@pytest.fixture
def raw(redis_cluster: Union[RedisCluster, ExternalServer]) -> Iterator["redis.cluster.RedisCluster"]:
    host, port = redis_cluster.startup_nodes[0]
    client = redis.cluster.RedisCluster(host=host, port=port)
    yield client
    client.close()


@pytest.fixture
def cp(redis_cluster_spec: BackendSpec, prefix: str) -> Iterator[RedisCheckpointer]:
    yield from checkpointer_on(redis_cluster_spec, prefix)


def test_each_thread_lives_in_one_slot_and_threads_spread_over_all_masters(
    cp: RedisCheckpointer, raw: "redis.cluster.RedisCluster", prefix: str
) -> None:
    ids = [f"{prefix}{i}" for i in range(30)] + [prefix + "}{", prefix + "{x}"]
    ports = set()
    for tid in ids:
        cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user(tid)]))
        head_key, log_key = cp.store._keys(tid)
        assert key_slot(head_key.encode()) == key_slot(log_key.encode())
        assert raw.exists(head_key) == 1 and raw.exists(log_key) == 1
        ports.add(node_port_of(raw, head_key))
    assert len(ports) == 3
    assert cp.cluster and len({key_slot(k.encode()) for k in cp.store.index.keys}) == 1
    listed = [i.thread_id for i in cp.iter_threads(prefix, page_size=7)]
    assert sorted(listed) == sorted(ids)


def test_second_step_keeps_the_index_in_step_with_heads(
    cp: RedisCheckpointer, raw: "redis.cluster.RedisCluster", prefix: str
) -> None:
    tid = prefix + "idx"
    cp.save(tid, AgentStateSnapshot())
    updated, expires, ids = cp.store.index.keys
    head_key = cp.store._keys(tid)[0]
    assert raw.zscore(updated, tid) == float(raw.hget(head_key, "u")) and raw.zscore(ids, tid) == 0
    cp.save(tid, AgentStateSnapshot(metadata={"n": 2}), force=True)
    assert raw.zscore(updated, tid) == float(raw.hget(head_key, "u"))
    # A late index step of an older save never moves the entry back.
    older = float(raw.hget(head_key, "u")) - 10
    cp.store.connection.run(redis_client.INDEX_TOUCH, cp.store.index.keys, (tid, repr(older), ""))
    assert raw.zscore(updated, tid) == float(raw.hget(head_key, "u"))
    assert cp.delete(tid) is True
    assert raw.zscore(updated, tid) is None and raw.zscore(expires, tid) is None and raw.zscore(ids, tid) is None


def test_list_threads_repairs_what_a_crashed_writer_left(
    cp: RedisCheckpointer, raw: "redis.cluster.RedisCluster", prefix: str
) -> None:
    ids = [f"{prefix}{i}" for i in range(4)]
    for tid in ids:
        cp.save(tid, AgentStateSnapshot())
        time.sleep(0.002)
    updated = cp.store.index.keys[0]
    truth: Dict[str, float] = {tid: float(raw.hget(cp.store._keys(tid)[0], "u")) for tid in ids}
    raw.zadd(updated, {ids[1]: truth[ids[3]] + 50})  # index step of an overtaken save
    raw.zadd(updated, {prefix + "ghost": truth[ids[0]]})  # index step without a thread
    raw.delete(*cp.store._keys(ids[2]))  # thread removed, index step lost
    assert [i.thread_id for i in cp.list_threads(prefix)] == [ids[3], ids[1], ids[0]]
    assert raw.zscore(updated, ids[1]) == truth[ids[1]]
    assert raw.zscore(updated, prefix + "ghost") is None and raw.zscore(updated, ids[2]) is None
    assert [i.thread_id for i in cp.iter_threads(prefix)] == [ids[0], ids[1], ids[3]]
    assert raw.zscore(cp.store.index.keys[2], ids[2]) is None
    # A thread whose index step never happened reappears with its next save.
    raw.zrem(updated, ids[0])
    raw.zrem(cp.store.index.keys[2], ids[0])
    assert ids[0] not in [i.thread_id for i in cp.list_threads(prefix)]
    assert ids[0] not in [i.thread_id for i in cp.iter_threads(prefix)]
    cp.save(ids[0], AgentStateSnapshot(metadata={"again": 1}), force=True)
    assert [i.thread_id for i in cp.list_threads(prefix)][0] == ids[0]
    assert [i.thread_id for i in cp.iter_threads(prefix)][0] == ids[0]


def test_expired_threads_leave_the_cluster_index(
    redis_cluster_spec: BackendSpec, raw: "redis.cluster.RedisCluster", prefix: str
) -> None:
    short = RedisCheckpointer.from_url(redis_cluster_spec.url, ttl=0.2)
    updated, expires, _ = short.store.index.keys
    try:
        for i in range(3):
            short.save(f"{prefix}gone-{i}", AgentStateSnapshot(messages=[AgentMessage.user("bye")]))
        for i in range(3):
            for key in short.store._keys(f"{prefix}gone-{i}"):
                assert raw.pttl(key) <= 200 and raw.pttl(key) != -1  # expiring, or already gone
        time.sleep(0.35)
        assert list(short.list_threads(prefix)) == []
        for i in range(3):
            short.save(f"{prefix}gone-{i}", AgentStateSnapshot())
        time.sleep(0.35)
        assert short.purge_expired() >= 3
        remaining = {m.decode() for m in raw.zrange(updated, 0, -1)} | {m.decode() for m in raw.zrange(expires, 0, -1)}
        assert not {t for t in remaining if t.startswith(prefix)}
    finally:
        short.close()


def test_script_cache_flush_on_every_node_is_survived(
    cp: RedisCheckpointer, raw: "redis.cluster.RedisCluster", prefix: str
) -> None:
    ids = [f"{prefix}s{i}" for i in range(6)]
    for tid in ids:
        cp.save(tid, AgentStateSnapshot())
    for node in raw.get_primaries():
        raw.execute_command("SCRIPT FLUSH", target_nodes=node)
        assert raw.execute_command("SCRIPT EXISTS", redis_client.WRITE.sha, target_nodes=node) == [False]
    for tid in ids:
        assert cp.save(tid, AgentStateSnapshot(), force=True) == 2
    assert len(cp.list_threads(prefix)) == 6
    assert cp.delete(ids[0]) is True


def test_whole_logs_are_staged_in_the_threads_slot(cp: RedisCheckpointer, raw: "redis.cluster.RedisCluster", prefix: str) -> None:
    ids = [f"{prefix}bulk{i}" for i in range(6)]
    for tid in ids:
        state = AgentStateSnapshot(messages=[AgentMessage.user(f"{tid} {i}") for i in range(80)])
        assert cp.save(tid, state) == 1
        state.messages = state.messages[40:]
        assert cp.save(tid, state) == 2
        loaded = cp.load(tid)
        assert loaded is not None and loaded.messages == state.messages
    leftovers = [key for node in raw.get_primaries() for key in raw.keys(f"*{prefix}*:stage:*", target_nodes=node)]
    assert leftovers == []


def test_cluster_client_is_built_lazily_and_outage_is_reported_fast() -> None:
    start = time.monotonic()
    cp = RedisCheckpointer.from_url("redis+cluster://127.0.0.1:1,127.0.0.1:2", timeout=FAST_TIMEOUT)
    assert time.monotonic() - start < 0.5
    with pytest.raises(BackendUnavailableError):
        cp.load("x")
    assert time.monotonic() - start < 2 * FAST_TIMEOUT + 1
    cp.close()


def test_cluster_urls(redis_cluster: Union[RedisCluster, ExternalServer]) -> None:
    cp = RedisCheckpointer.from_url(
        "rediss+cluster://user:pw-secret@10.0.0.1:7000,[::1]:7001,node3?ssl_cert_reqs=none&key_prefix=c:&max_connections=4"
    )
    kwargs = cp.store.connection._cluster_kwargs
    assert kwargs is not None
    assert kwargs["url"].startswith("rediss://user:pw-secret@10.0.0.1:7000/0?ssl_cert_reqs=none")
    assert [(n.host, n.port) for n in kwargs["startup_nodes"]] == [("::1", 7001), ("node3", 6379)]
    assert kwargs["max_connections"] == 4 and cp.key_prefix == "c:"
    assert "pw-secret" not in repr(cp)
    cp.close()
    with pytest.raises(ConfigurationError):
        RedisCheckpointer("redis+cluster://h:1/3")
    with pytest.raises(ConfigurationError):
        RedisCheckpointer("redis+cluster://h:port")
    built = from_url(redis_cluster.url)
    assert isinstance(built, RedisCheckpointer) and built.cluster
    built.save("url-check", AgentStateSnapshot())
    assert built.delete("url-check") is True
    built.close()


@pytest.fixture
def persistent_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    cluster = RedisCluster.start(tmp_path, extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    try:
        yield cluster
    finally:
        cluster.stop()


def test_master_crash_and_restart(persistent_cluster: RedisCluster, caplog: pytest.LogCaptureFixture) -> None:
    cp = RedisCheckpointer.from_url(persistent_cluster.url, timeout=FAST_TIMEOUT)
    probe = RedisCheckpointer.from_url(persistent_cluster.url, timeout=FAST_TIMEOUT, key_prefix="probe:")
    raw = redis.cluster.RedisCluster(host="127.0.0.1", port=persistent_cluster.ports[0])
    try:
        ids = [f"t{i}" for i in range(12)]
        for tid in ids:
            cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user(tid)] * 3))
        victim_port = node_port_of(raw, cp.store._keys(ids[0])[0])
        victim = next(node for node in persistent_cluster.nodes if node.port == victim_port)
        on_victim = [t for t in ids if node_port_of(raw, cp.store._keys(t)[0]) == victim_port]
        elsewhere = [t for t in ids if t not in on_victim]
        assert on_victim and elsewhere

        # A save sent to a hung master may have run; one that cannot connect has not.
        # (Under a key prefix of their own: the first may land once the master resumes.)
        probe_id = next(f"p{i}" for i in range(1000) if node_port_of(raw, probe.store._keys(f"p{i}")[0]) == victim_port)
        probe.save(probe_id, AgentStateSnapshot(), force=True)  # opens a connection to the victim
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGSTOP)
        try:
            with pytest.raises(BackendUnavailableError) as info:
                probe.save(probe_id, AgentStateSnapshot(metadata={"lost": True}), force=True)
            assert info.value.maybe_applied is True
        finally:
            os.kill(victim.pid, signal.SIGCONT)
        victim.kill()
        with pytest.raises(BackendUnavailableError) as info:
            probe.save(probe_id, AgentStateSnapshot(metadata={"refused": True}), force=True)
        assert info.value.maybe_applied is False
        failures: List[float] = []
        for tid in on_victim:
            start = time.monotonic()
            with pytest.raises(BackendUnavailableError):
                cp.update(tid, lambda s: s.messages.append(AgentMessage.user("while down")))
            failures.append(time.monotonic() - start)
        assert max(failures) < 2 * FAST_TIMEOUT + 1
        # Masters that are up keep serving their own threads meanwhile.
        assert cp.load(elsewhere[0]) is not None

        with caplog.at_level(logging.INFO, logger="agents_persist.backends.redis"):
            victim.start_again()
            persistent_cluster.wait_ready()
            for tid in ids:
                state = cp.load(tid)
                assert state is not None and [m.content for m in state.messages] == [tid] * 3
                state.messages.append(AgentMessage.user("after"))
                cp.save(tid, state)
        assert any("script cache" in record.getMessage() for record in caplog.records)
        assert sorted(i.thread_id for i in cp.list_threads()) == sorted(ids)
        assert all(i.message_count == 4 for i in cp.list_threads())
    finally:
        raw.close()
        probe.close()
        cp.close()
