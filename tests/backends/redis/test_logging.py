"""What the Redis backend logs: a script reload only after the server lost a script this process had loaded."""

from __future__ import annotations

import logging

import pytest
import redis

from agents_persist import AgentMessage, AgentStateSnapshot, RedisCheckpointer
from tests.servers import RedisServer

LOGGER = "agents_persist.backends.redis.client"


def test_first_use_logs_no_lost_script_cache_but_a_flush_does(
    private_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    raw = redis.Redis.from_url(private_server.url)
    cp = RedisCheckpointer.from_url(private_server.url, timeout=5)
    try:
        with caplog.at_level(logging.DEBUG, logger=LOGGER):
            cp.save("t", AgentStateSnapshot(messages=[AgentMessage.user("secret words")]))  # first use: loads scripts
            assert [r for r in caplog.records if r.levelno >= logging.INFO] == []
            raw.script_flush()  # what a restart or failover does to the cache
            caplog.clear()
            cp.update("t", lambda s: s.messages.append(AgentMessage.assistant("more secret words")))
        infos = [r for r in caplog.records if r.levelno == logging.INFO]
        assert len(infos) == 1 and "lost script write.lua from its script cache" in infos[0].getMessage()
        assert all("secret" not in r.getMessage() for r in caplog.records)
        assert cp.load("t") is not None
    finally:
        cp.close()
        raw.close()
