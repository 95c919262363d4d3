"""Fast checks that the throwaway servers in tests/servers/ start, answer, restart and stop."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

try:  # same module object as tests/conftest.py when the repo root is importable
    import tests.servers as servers
except ImportError:  # run from inside tests/ or with tests/ on sys.path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import servers  # type: ignore[no-redef]

ENV_POSTGRES_URL = servers.ENV_POSTGRES_URL
ENV_REDIS_CLUSTER_URL = servers.ENV_REDIS_CLUSTER_URL
ENV_REDIS_URL = servers.ENV_REDIS_URL
ExternalServer = servers.ExternalServer
MotoServer = servers.MotoServer
PostgresServer = servers.PostgresServer
RedisCluster = servers.RedisCluster
RedisServer = servers.RedisServer
ServerStartError = servers.ServerStartError
free_port = servers.free_port
pid_alive = servers.pid_alive
postgres_url_or_start = servers.postgres_url_or_start
redis_cluster_url_or_start = servers.redis_cluster_url_or_start
redis_url_or_start = servers.redis_url_or_start
wait_until = servers.wait_until

# -- session fixtures (local to this file) ------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer.start(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = RedisCluster.start(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer.start(tmp_path_factory.mktemp("pg"))
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer.start(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


# -- helpers --------------------------------------------------------------------


def test_free_port_is_bindable_and_unique() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    port = ports.pop()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_until_returns_value_and_raises_on_timeout(tmp_path: Path) -> None:
    assert wait_until(lambda: 42, 1, "answer") == 42
    log = tmp_path / "x.log"
    log.write_text("line one\nboom: it broke\n")
    t0 = time.monotonic()
    with pytest.raises(ServerStartError, match=r"(?s)never.*timed out.*boom: it broke"):
        wait_until(lambda: False, 0.2, "never", logs=[log])
    assert time.monotonic() - t0 < 2
    with pytest.raises(ServerStartError, match="process exited"):
        wait_until(lambda: False, 30, "dead", alive=lambda: False)


# -- redis ----------------------------------------------------------------------


def test_redis_ping_and_restart_same_port(redis_server: RedisServer) -> None:
    import redis

    assert redis_server.managed
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis.Redis.from_url(redis_server.url)
    assert client.ping()
    client.set("k", "v")
    old_pid = redis_server.pid
    redis_server.restart()
    assert redis_server.pid != old_pid
    assert not pid_alive(old_pid)
    assert redis.Redis.from_url(redis_server.url).ping()
    assert redis.Redis.from_url(redis_server.url).get("k") is None  # no persistence


def test_redis_stop_kill_and_start_error(tmp_path: Path) -> None:
    import redis

    server = RedisServer.start(tmp_path)
    pid = server.pid
    assert pid_alive(pid)
    server.stop()
    assert not pid_alive(pid) and server.pid is None
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(server.url, socket_connect_timeout=0.5).ping()
    server.restart()
    pid = server.pid
    server.kill()
    assert not pid_alive(pid)
    server.stop()  # idempotent

    with pytest.raises(ServerStartError, match="no-such-directive"):
        RedisServer.start(tmp_path, extra_args=["--no-such-directive", "1"], timeout=5)


# -- redis cluster ------------------------------------------------------------------


def test_redis_cluster_set_get_across_slots(redis_cluster: RedisCluster) -> None:
    from redis.cluster import ClusterNode
    from redis.cluster import RedisCluster as PyRedisCluster

    assert len(redis_cluster.startup_nodes) == 3
    assert redis_cluster.url.startswith("redis+cluster://127.0.0.1:")
    rc = PyRedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in redis_cluster.startup_nodes])
    try:
        used_ports = set()
        for i in range(60):
            key = f"key-{i}"
            rc.set(key, str(i))
            used_ports.add(rc.get_node_from_key(key).port)
        assert used_ports == set(redis_cluster.ports)
        assert [rc.get(f"key-{i}") for i in range(60)] == [str(i).encode() for i in range(60)]
    finally:
        rc.close()


def test_redis_cluster_restart(tmp_path: Path) -> None:
    from redis.cluster import ClusterNode
    from redis.cluster import RedisCluster as PyRedisCluster

    cluster = RedisCluster.start(tmp_path)
    try:
        url, old_pids = cluster.url, cluster.pids
        cluster.restart()
        assert cluster.url == url
        assert not any(pid_alive(p) for p in old_pids)
        rc = PyRedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in cluster.startup_nodes])
        rc.set("a", "1")
        assert rc.get("a") == b"1"
        rc.close()
    finally:
        pids = cluster.pids
        cluster.stop()
    assert not any(pid_alive(p) for p in pids)


# -- postgres -----------------------------------------------------------------------


def test_postgres_select_and_restart_keeps_data(pg_server: PostgresServer) -> None:
    import psycopg2

    assert pg_server.url == f"postgresql://postgres@127.0.0.1:{pg_server.port}/postgres"
    conn = psycopg2.connect(pg_server.url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select 1")
        assert cur.fetchone() == (1,)
        cur.execute("create table survives (x int)")
        cur.execute("insert into survives values (7)")
    conn.close()

    old_pid = pg_server.pid
    assert pid_alive(old_pid)
    pg_server.stop()  # immediate: crash-like
    assert not pid_alive(old_pid) and pg_server.pid is None
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(pg_server.url, connect_timeout=2)
    pg_server.start_again()
    conn = psycopg2.connect(pg_server.url)
    with conn.cursor() as cur:
        cur.execute("select x from survives")
        assert cur.fetchall() == [(7,)]
    conn.close()

    pg_server.kill()
    pg_server.restart()
    conn = psycopg2.connect(pg_server.dsn)
    with conn.cursor() as cur:
        cur.execute("select count(*) from survives")
        assert cur.fetchone() == (1,)
    conn.close()


# -- moto / dynamodb --------------------------------------------------------------


def test_moto_dynamodb_list_tables(moto_server: MotoServer) -> None:
    import boto3

    client = boto3.client(
        "dynamodb",
        endpoint_url=moto_server.url,
        region_name="us-east-1",
        aws_access_key_id="t",
        aws_secret_access_key="t",
    )
    assert client.list_tables()["TableNames"] == []
    client.create_table(
        TableName="servers-test",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    assert client.list_tables()["TableNames"] == ["servers-test"]
    moto_server.reset()
    assert boto3.client("dynamodb", **moto_server.client_kwargs()).list_tables()["TableNames"] == []


def test_moto_stop_ends_process(tmp_path: Path) -> None:
    server = MotoServer.start(tmp_path)
    pid = server.pid
    assert pid_alive(pid)
    server.stop()
    assert not pid_alive(pid) and server.pid is None


# -- env overrides ------------------------------------------------------------------


def test_env_overrides_give_unmanaged_servers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_REDIS_URL, "redis://127.0.0.1:1/0")
    monkeypatch.setenv(ENV_REDIS_CLUSTER_URL, "redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
    monkeypatch.setenv(ENV_POSTGRES_URL, "postgresql://u@127.0.0.1:2/db")
    redis_ext = redis_url_or_start(tmp_path)
    cluster_ext = redis_cluster_url_or_start(tmp_path)
    pg_ext = postgres_url_or_start(tmp_path)
    for server in (redis_ext, cluster_ext, pg_ext):
        assert isinstance(server, ExternalServer)
        assert server.managed is False
        server.stop()  # no-op
        with pytest.raises(RuntimeError):
            server.restart()
    assert redis_ext.url == "redis://127.0.0.1:1/0"
    assert cluster_ext.startup_nodes == [("127.0.0.1", 7000), ("127.0.0.1", 7001)]
    assert pg_ext.url == "postgresql://u@127.0.0.1:2/db"

    monkeypatch.setenv(ENV_REDIS_URL, "")
    started = redis_url_or_start(tmp_path)
    try:
        assert isinstance(started, RedisServer) and started.managed
    finally:
        started.stop()


# -- cleanup backstops ------------------------------------------------------------

_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from servers import PostgresServer, RedisServer
r = RedisServer.start(sys.argv[2])
p = PostgresServer.start() if sys.argv[3] == "pg" else None
print(json.dumps([r.pid, p.pid if p else None, str(p.base_dir) if p else None]), flush=True)
if sys.argv[4] == "hang":
    time.sleep(120)
"""


def _run_child(tmp_path: Path, with_pg: bool, hang: bool) -> tuple[list[int], str | None]:
    import json
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    argv = [sys.executable, "-c", _CHILD, here, str(tmp_path), "pg" if with_pg else "-", "hang" if hang else "-"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    redis_pid, pg_pid, pg_dir = json.loads(line)
    if hang:
        proc.kill()  # SIGKILL: no atexit
    assert proc.wait(timeout=30) in (0, -9)
    return [p for p in (redis_pid, pg_pid) if p], pg_dir


def test_atexit_stops_servers_left_running(tmp_path: Path) -> None:
    pids, _ = _run_child(tmp_path, with_pg=False, hang=False)
    wait_until(lambda: not any(pid_alive(p) for p in pids), 5, "servers to be gone")


def test_sigkilled_test_process_leaves_no_servers(tmp_path: Path) -> None:
    pids, pg_dir = _run_child(tmp_path, with_pg=True, hang=True)
    assert pg_dir is not None
    wait_until(
        lambda: not any(pid_alive(p) for p in pids) and not os.path.exists(pg_dir),
        10,
        "redis (PDEATHSIG) and postgres (watchdog) to be gone",
    )
