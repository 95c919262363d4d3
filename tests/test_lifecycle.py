"""Closing a checkpointer stops everything it started: threads, pooled connections, sockets, file handles.

Per backend, 200 checkpointers are opened against a real server (each
makes a call, so its pool connects and any helper thread starts), then all
are closed. Within about a second the process must be back to the threads
it had before, and the server to the connections it had before (counted on
the server: ``pg_stat_activity`` by ``application_name``, Redis ``CLIENT
LIST`` by client name, on every node of a cluster); for DynamoDB (moto) and
SQLite, the process's own sockets and open files are counted (moto's
HTTP/1.0 server closes each connection after its response, so for DynamoDB
only the count after close() says something).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, List

import psycopg2
import pytest

from agents_persist import AgentMessage, AgentStateSnapshot, Checkpointer, from_url
from tests.servers import PostgresServer, redis_command

COUNT = 200
#: How long after the last close() everything must be back.
SETTLE_SECONDS = 1.5


def settled(measure: Callable[[], int], target: int, seconds: float = SETTLE_SECONDS) -> int:
    """``measure()`` once it is at most ``target``, or its last value after ``seconds``."""
    deadline = time.monotonic() + seconds
    value = measure()
    while value > target and time.monotonic() < deadline:
        time.sleep(0.05)
        value = measure()
    return value


def open_use_close(make: Callable[[], Checkpointer], during: Callable[[], None] = lambda: None) -> List[str]:
    """Open COUNT checkpointers, make each save and load, run ``during()`` with all open, close all; their thread names."""
    checkpointers = [make() for _ in range(COUNT)]
    try:
        state = AgentStateSnapshot(messages=[AgentMessage.user("hi")])
        for index, checkpointer in enumerate(checkpointers):
            thread = f"life-{uuid.uuid4().hex[:6]}-{index}"
            checkpointer.save(thread, state)
            assert checkpointer.load(thread) is not None
            checkpointer.delete(thread)
        during()
    finally:
        for checkpointer in checkpointers:
            checkpointer.close()
    return [thread.name for thread in threading.enumerate()]


def assert_threads_back(before: int) -> None:
    after = settled(threading.active_count, before)
    names = sorted(thread.name for thread in threading.enumerate())
    assert after <= before, f"{after - before} threads still alive {SETTLE_SECONDS}s after close(): {names}"


# ---------------------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def roomy_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL of its own with room for 200 checkpointers' connections at once."""
    server = PostgresServer.start(tmp_path_factory.mktemp("pg-life"), max_connections=COUNT + 40)
    try:
        yield server
    finally:
        server.stop()
        server.cleanup()


def pg_connections(server: PostgresServer, application_name: str) -> int:
    conn = psycopg2.connect(server.url, connect_timeout=5)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application_name,))
            return int(cursor.fetchone()[0])
    finally:
        conn.close()


def test_closing_200_postgres_checkpointers_stops_their_threads_and_connections(roomy_postgres: PostgresServer) -> None:
    name = f"ap-life-{uuid.uuid4().hex[:8]}"
    url = f"{roomy_postgres.url}?application_name={name}"
    schema = f"ap_life_{uuid.uuid4().hex[:8]}"
    from_url(url, schema=schema).close()  # the tables exist before the count starts
    before = threading.active_count()

    def all_connected() -> None:
        assert pg_connections(roomy_postgres, name) == COUNT

    open_use_close(lambda: from_url(url, schema=schema, connect_timeout=3), all_connected)
    assert_threads_back(before)
    assert settled(lambda: pg_connections(roomy_postgres, name), 0) == 0


# ---------------------------------------------------------------------------------------------- Redis


def redis_clients(ports: List[int], client_name: str) -> int:
    total = 0
    for port in ports:
        listing = redis_command(port, "CLIENT", "LIST")
        total += sum(f" name={client_name} " in f" {line} " for line in listing.decode().splitlines())
    return total


@pytest.mark.parametrize("kind", ["standalone", "cluster"])
def test_closing_200_redis_checkpointers_stops_their_threads_and_connections(kind: str, request: pytest.FixtureRequest) -> None:
    server: Any = request.getfixturevalue("redis_server" if kind == "standalone" else "redis_cluster")
    if not server.managed:
        pytest.skip("counts the server's clients: needs a server of the test run's own")
    ports = [server.port] if kind == "standalone" else list(server.ports)
    name = f"ap-life-{uuid.uuid4().hex[:8]}"
    url = f"{server.url}{'&' if '?' in server.url else '?'}client_name={name}"
    before = threading.active_count()

    def all_connected() -> None:
        assert redis_clients(ports, name) >= COUNT

    open_use_close(lambda: from_url(url, timeout=5), all_connected)
    assert_threads_back(before)
    assert settled(lambda: redis_clients(ports, name), 0) == 0


# ---------------------------------------------------------------------------------------------- DynamoDB, SQLite


def open_sockets() -> int:
    return sum(1 for fd in os.listdir("/proc/self/fd") if _link(fd).startswith("socket:"))


def open_files(path: Path) -> int:
    prefix = str(path)
    return sum(1 for fd in os.listdir("/proc/self/fd") if _link(fd).startswith(prefix))


def _link(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def test_closing_200_dynamodb_checkpointers_stops_their_threads_and_sockets(dynamodb_spec: Any) -> None:
    from_url(dynamodb_spec.url, **dynamodb_spec.options).close()  # the table exists before the count starts
    before_threads, before_sockets = threading.active_count(), open_sockets()
    # (moto's HTTP/1.0 server closes each connection after its response: no socket count while open)
    open_use_close(lambda: from_url(dynamodb_spec.url, **dynamodb_spec.options))
    assert_threads_back(before_threads)
    assert settled(open_sockets, before_sockets) <= before_sockets


def test_closing_200_sqlite_checkpointers_stops_their_threads_and_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "life.db"
    from_url(f"sqlite:///{path}").close()
    before = threading.active_count()

    def all_open() -> None:
        assert open_files(path) >= COUNT

    open_use_close(lambda: from_url(f"sqlite:///{path}"), all_open)
    assert_threads_back(before)
    assert settled(lambda: open_files(path), 0) == 0
