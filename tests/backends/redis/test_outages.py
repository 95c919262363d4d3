"""Redis: recovery from crashes, restarts, hangs and lost script caches; pool limits; fork safety.

These tests restart, pause or exhaust a throwaway ``redis-server`` of their own.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any, Callable, List

import pytest
import redis

import agents_persist.backends.redis.client as redis_client
from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    BackendUnavailableError,
    RedisCheckpointer,
)
from tests.backends.redis.support import DEADLINE, FAST_TIMEOUT, FakeServer, increment, like_redis_until, messages
from tests.servers import RedisServer

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
        state = AgentStateSnapshot()
        assert cp.save("s", state) == 1
        raw.script_flush()
        assert cp.save("s", state) == 2
        assert raw.script_exists(redis_client.WRITE.sha) == [True]
        assert cp.delete("s") is True
    finally:
        cp.close()
        raw.close()


def test_exhausted_pool_waits_at_most_the_timeout(private_server: RedisServer) -> None:
    cp = RedisCheckpointer.from_url(private_server.url, max_connections=1, timeout=0.3)
    try:
        cp.save("p", AgentStateSnapshot())
        pool = cp.store.connection.client().connection_pool
        held = pool.get_connection()
        start = time.monotonic()
        with pytest.raises(BackendUnavailableError) as info:
            cp.load("p")
        assert 0.25 < time.monotonic() - start < 1.5
        with pytest.raises(BackendUnavailableError) as info:
            cp.save("p", AgentStateSnapshot(), force=True)
        assert info.value.maybe_applied is False, "no connection was free: the save was never sent"
        pool.release(held)
        assert cp.load("p") is not None
    finally:
        cp.close()


# ---------------------------------------------------------------------- maybe_applied


def test_a_change_whose_reply_is_lost_may_have_been_applied(persistent_server: RedisServer) -> None:
    """A change sent to a hung server times out with maybe_applied=True (and reads with False);
    one whose connection could not even be set up with False. Repeating the append with its
    idempotency key after the server resumed applies it exactly once."""
    cp = RedisCheckpointer.from_url(persistent_server.url, timeout=0.5)
    assert persistent_server.pid is not None
    state = AgentStateSnapshot(messages=messages(2))
    cp.save("m", state)
    append: Callable[[], Any] = lambda: cp.append("m", [AgentMessage.user("once")], idempotency_key="job-1")  # noqa: E731
    calls = {
        "append": append,
        "save": lambda: cp.save("m", state),
        "delete": lambda: cp.delete("other"),
        "load": lambda: cp.load("m"),
        "get_version": lambda: cp.get_version("m"),
    }
    try:
        for name, call in calls.items():
            assert cp.get_version("warm") == 0  # leaves an open connection in the pool, used next
            os.kill(persistent_server.pid, signal.SIGSTOP)
            try:
                with pytest.raises(BackendUnavailableError) as info:
                    call()
                assert info.value.maybe_applied is (name not in ("load", "get_version")), name
                # The lost connection's replacement hangs in the handshake: this one never left.
                with pytest.raises(BackendUnavailableError) as info:
                    call()
                assert info.value.maybe_applied is False, name
            finally:
                os.kill(persistent_server.pid, signal.SIGCONT)
        version = append()
        loaded = cp.load("m")
        assert loaded is not None and loaded.version == version
        assert [m.content for m in loaded.messages].count("once") == 1
        assert append() == version
    finally:
        cp.close()


def test_a_change_is_not_applied_when_the_server_refuses_the_connection() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cp = RedisCheckpointer(f"redis://127.0.0.1:{port}/0", timeout=FAST_TIMEOUT)
    try:
        for call in (
            lambda: cp.save("r", AgentStateSnapshot()),
            lambda: cp.append("r", [AgentMessage.user("x")]),
            lambda: cp.delete("r"),
        ):
            with pytest.raises(BackendUnavailableError) as info:
                call()
            assert info.value.maybe_applied is False
    finally:
        cp.close()


def test_a_change_is_maybe_applied_when_the_connection_drops_after_sending() -> None:
    server = FakeServer(like_redis_until(b"EVALSHA"))
    cp = RedisCheckpointer(server.url, timeout=FAST_TIMEOUT)
    try:
        with pytest.raises(BackendUnavailableError) as info:
            cp.save("d", AgentStateSnapshot())
        assert info.value.maybe_applied is True
        assert any(command[0].upper() == b"EVALSHA" for command in server.received)
        with pytest.raises(BackendUnavailableError) as info:
            cp.delete("d")
        assert info.value.maybe_applied is True
    finally:
        cp.close()
        server.close()


# ---------------------------------------------------------------------- fork safety


def test_forked_child_gets_its_own_connection_and_parent_keeps_its_own(private_server: RedisServer) -> None:
    cp = RedisCheckpointer.from_url(private_server.url)
    try:
        cp.update("f", increment)
        parent_id = cp.store.connection.client().client_id()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.close(read_end)
                child_id = cp.store.connection.client().client_id()
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
        assert cp.store.connection.client().client_id() == parent_id
        cp.update("f", increment)
        final = cp.load("f")
        assert final is not None and final.metadata["n"] == 12
    finally:
        cp.close()
