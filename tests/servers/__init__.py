"""Throwaway real servers for the test suite: Redis, Redis Cluster, PostgreSQL, moto.

Every server listens on a free loopback port chosen at start, is waited for
with a deadline (failure raises :class:`ServerStartError` with the tail of its
log, never a skip) and is stopped by PID only. Every started server is also
registered with :mod:`atexit` so that a crashed or aborted test session does
not leave processes behind.

One module per server, ``process`` holding the shared plumbing; importable as
``tests.servers`` or, with ``tests/`` on ``sys.path``, as ``servers`` (no pytest dependency).

Environment overrides (an external server is used and never stopped):

``AGENTS_PERSIST_TEST_REDIS_URL``, ``AGENTS_PERSIST_TEST_REDIS_CLUSTER_URL``,
``AGENTS_PERSIST_TEST_POSTGRES_URL``, ``AGENTS_PERSIST_TEST_DYNAMODB_ENDPOINT``;
see :func:`redis_url_or_start` and friends.

Tool locations can be overridden with ``AGENTS_PERSIST_TEST_REDIS_SERVER``,
``AGENTS_PERSIST_TEST_REDIS_CLI``, ``AGENTS_PERSIST_TEST_PG_BIN`` (a directory)
and ``AGENTS_PERSIST_TEST_MOTO_SERVER``.
"""

from __future__ import annotations

from .moto import MotoServer, dynamodb_endpoint_or_start
from .postgres import PostgresServer, postgres_url_or_start
from .process import (
    ENV_DYNAMODB_ENDPOINT,
    ENV_POSTGRES_URL,
    ENV_REDIS_CLUSTER_URL,
    ENV_REDIS_URL,
    ExternalServer,
    ServerStartError,
    free_port,
    log_tail,
    pid_alive,
    stop_all,
    wait_until,
)
from .redis import RedisCluster, RedisServer, redis_cluster_url_or_start, redis_command, redis_url_or_start

__all__ = [
    "ServerStartError",
    "ExternalServer",
    "RedisServer",
    "RedisCluster",
    "PostgresServer",
    "MotoServer",
    "free_port",
    "wait_until",
    "pid_alive",
    "log_tail",
    "redis_command",
    "stop_all",
    "redis_url_or_start",
    "redis_cluster_url_or_start",
    "postgres_url_or_start",
    "dynamodb_endpoint_or_start",
    "ENV_REDIS_URL",
    "ENV_REDIS_CLUSTER_URL",
    "ENV_POSTGRES_URL",
    "ENV_DYNAMODB_ENDPOINT",
]
