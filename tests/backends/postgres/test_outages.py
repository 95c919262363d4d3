"""A server that goes down, restarts or freezes: typed errors within deadlines, then recovery."""

from __future__ import annotations

import os
import threading
import time
from typing import Dict, List

import pytest

from agents_persist import AgentMessage, AgentStateSnapshot, BackendUnavailableError, PostgresCheckpointer
from tests.backends.postgres.helpers import NO_HANG_SECONDS, snapshot, wait_for
from tests.fixtures.postgres import POSTGRES_TEST_OPTIONS, drop_schema, unique_schema
from tests.servers import PostgresServer


def test_server_restart_mid_run_gives_typed_errors_then_recovers_with_data_intact(own_server: PostgresServer) -> None:
    checkpointer = PostgresCheckpointer(own_server.url, **POSTGRES_TEST_OPTIONS)
    big = AgentStateSnapshot(messages=[AgentMessage.user(f"message {i}") for i in range(200)], metadata={"k": "v"})
    checkpointer.save("big", big)
    outcomes: Dict[str, int] = {"ok": 0, "unavailable": 0}
    unexpected: List[BaseException] = []
    slowest = [0.0]
    lock = threading.Lock()
    stop = threading.Event()
    restarted = threading.Event()
    ok_after_restart = [0]

    def increment(state: AgentStateSnapshot) -> None:
        state.metadata["n"] = state.metadata.get("n", 0) + 1

    def worker() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                checkpointer.update("counter", increment)
                outcome = "ok"
            except BackendUnavailableError:
                outcome = "unavailable"
                time.sleep(0.05)
            except BaseException as exc:  # pragma: no cover - reported below
                with lock:
                    unexpected.append(exc)
                return
            with lock:
                outcomes[outcome] += 1
                slowest[0] = max(slowest[0], time.monotonic() - started)
                if outcome == "ok" and restarted.is_set():
                    ok_after_restart[0] += 1

    workers = [threading.Thread(target=worker) for _ in range(4)]
    for thread in workers:
        thread.start()
    try:
        wait_for(lambda: outcomes["ok"] >= 20, what="updates before the restart")
        own_server.stop(mode="immediate")
        wait_for(lambda: outcomes["unavailable"] >= 4, what="typed errors while the server is down")
        own_server.start_again()
        restarted.set()
        wait_for(lambda: ok_after_restart[0] >= 20, what="updates after the restart")
    finally:
        stop.set()
        for thread in workers:
            thread.join(60)
    assert not any(thread.is_alive() for thread in workers), "a worker hung"
    assert not unexpected, unexpected
    assert slowest[0] < NO_HANG_SECONDS
    counter = checkpointer.load("counter")
    assert counter is not None
    # Updates that failed may or may not have committed (the reply was lost); none was lost or doubled.
    assert outcomes["ok"] <= counter.metadata["n"] <= outcomes["ok"] + outcomes["unavailable"]
    assert counter.version == counter.metadata["n"]
    loaded_big = checkpointer.load("big")
    assert loaded_big is not None and loaded_big.messages == big.messages and loaded_big.metadata == {"k": "v"}
    checkpointer.close()


def test_server_down_raises_unavailable_quickly_and_first_use_waits_for_nothing(own_server: PostgresServer) -> None:
    checkpointer = PostgresCheckpointer(own_server.url, **POSTGRES_TEST_OPTIONS)
    checkpointer.save("down", snapshot("kept"))
    own_server.stop(mode="fast")
    try:
        for call in (lambda: checkpointer.load("down"), lambda: checkpointer.save("down", snapshot("lost"))):
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError) as info:
                call()
            assert time.monotonic() - started < NO_HANG_SECONDS
            assert info.value.maybe_applied is False  # refused at connect: nothing was sent
    finally:
        own_server.start_again()
    loaded = checkpointer.load("down")
    assert loaded is not None and loaded.messages[0].content == "kept"
    checkpointer.delete("down")
    checkpointer.close()


def test_frozen_server_raises_unavailable_within_the_deadline_then_recovers(own_server: PostgresServer) -> None:
    """A server process that stops answering (SIGSTOP) must not hang the caller: TCP stays up, so only a
    client-side deadline helps."""
    import signal

    schema = unique_schema()
    cp = PostgresCheckpointer(own_server.url, schema=schema, statement_timeout=1.0, max_connections=1, timeout=2.0)
    try:
        cp.save("t", AgentStateSnapshot(messages=[AgentMessage.user("kept")]))
        with cp.store._cursor("find the server process") as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (backend_pid,) = cursor.fetchone()
        os.kill(backend_pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="did not answer within 6s"):
                cp.load("t")
            elapsed = time.monotonic() - start
            assert 5.0 <= elapsed < 9.0, elapsed
        finally:
            os.kill(backend_pid, signal.SIGCONT)
        state = cp.load("t")  # a fresh connection; the frozen one was discarded
        assert state is not None and [m.content for m in state.messages] == ["kept"]
    finally:
        cp.close()
        drop_schema(own_server.url, schema)
