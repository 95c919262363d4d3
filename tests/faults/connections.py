"""Connections per backend: a label for one process's checkpointer, its pool's state, and what the server counts.

* PostgreSQL: ``application_name`` = label, counted in ``pg_stat_activity``.
* Redis (standalone and cluster): ``client_name`` = label, counted in
  ``CLIENT LIST`` of every node.
* SQLite: this process's open file handles on the database (and its
  ``-wal``/``-shm`` files).
* DynamoDB: this process's established TCP connections to the endpoint
  (moto's HTTP/1.0 server closes each one after its response, so mostly 0).

The server-side counts of PostgreSQL and Redis can be read from any process;
the others only in the process that owns the connections.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, List, Optional, Set, Tuple
from urllib.parse import urlsplit

from agents_persist import Checkpointer
from tests.spec import BackendSpec

__all__ = ["labelled", "pool_usage", "server_connections", "process_connections"]


def labelled(spec: BackendSpec, backend: str, label: str) -> BackendSpec:
    """``spec`` with connections named ``label`` where the server can tell (PostgreSQL, Redis)."""
    parameter = {"postgres": "application_name", "redis": "client_name"}.get(backend)
    if parameter is None:
        return spec
    return replace(spec, url=f"{spec.url}{'&' if '?' in spec.url else '?'}{parameter}={label}")


def pool_usage(cp: Checkpointer) -> Optional[Tuple[int, int]]:
    """``(idle, borrowed)`` connections of ``cp``'s pool(s); None where the backend has no pool of its own (DynamoDB, memory)."""
    store: Any = cp.store
    pools: List[Any]
    if hasattr(store, "_pool"):  # SQLite
        pools = [store._pool]
    elif hasattr(store, "_connections"):  # PostgreSQL
        pools = [store._connections._pool]
    elif hasattr(store, "connection") and hasattr(store, "key_prefix"):  # Redis
        client = store.connection.client()
        if store.cluster:
            nodes = client.get_nodes()
            pools = [node.redis_connection.connection_pool for node in nodes if node.redis_connection is not None]
        else:
            pools = [client.connection_pool]
        idle = sum(sum(1 for conn in pool.pool.queue if conn is not None) for pool in pools)
        created = sum(len(pool._connections) for pool in pools)
        return idle, created - idle
    else:
        return None
    return sum(len(pool._idle) for pool in pools), sum(pool.max_size - pool._slots._value for pool in pools)


def server_connections(backend: str, probe: Checkpointer, label: str) -> Optional[int]:
    """Connections named ``label`` as the server counts them, asked through ``probe`` (another checkpointer of the store)."""
    store: Any = probe.store
    if backend == "postgres":
        with store._connections.connection("count connections") as conn, conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (label,))
            return int(cursor.fetchone()[0])
    if backend == "redis":
        client = store.connection.client()
        if store.cluster:
            listing = client.client_list(target_nodes=client.ALL_NODES)
            entries = [entry for node_entries in listing.values() for entry in node_entries]
        else:
            entries = client.client_list()
        return sum(1 for entry in entries if entry.get("name") == label)
    return None


def process_connections(backend: str, spec: BackendSpec) -> Optional[int]:
    """This process's own handles on the store: SQLite files, DynamoDB TCP connections; None for the others."""
    if backend == "sqlite":
        path = spec.url[len("sqlite:///") :].split("?")[0]
        return sum(1 for link in _fd_links() if link in (path, path + "-wal", path + "-shm", path + "-journal"))
    if backend == "dynamodb":
        endpoint = spec.url.split("endpoint_url=")[1].split("&")[0]
        port = urlsplit(endpoint).port
        assert port is not None, endpoint
        return _tcp_connections_to(port)
    return None


def _fd_links() -> List[str]:
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return links


def _tcp_connections_to(port: int) -> int:
    """Established TCP connections of this process to ``port`` on any address (from /proc)."""
    inodes: Set[str] = {link[len("socket:[") : -1] for link in _fd_links() if link.startswith("socket:[")}
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                    if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                        count += 1
        except FileNotFoundError:
            pass
    return count
