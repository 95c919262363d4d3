"""Fixtures of the Redis tests: throwaway servers a test may flush, pause or kill, and a raw client.

Tests that restart, pause or reconfigure a server start their own throwaway
``redis-server``; the others use the session server of ``tests/fixtures/redis.py``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Iterator

import pytest
import redis

from agents_persist import RedisCheckpointer
from tests.backends.redis.support import checkpointer_on
from tests.servers import RedisServer
from tests.spec import BackendSpec


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
    yield from checkpointer_on(redis_spec, prefix)
