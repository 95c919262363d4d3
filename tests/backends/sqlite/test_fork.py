"""Forking while other threads use SQLite: the fork gate keeps every child from hanging."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from agents_persist import AgentMessage, AgentStateSnapshot, SqliteCheckpointer

FORKS = 200
CHILD_TIMEOUT = 10.0


def _wait(pid: int, timeout: float) -> "int | None":
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.002)
    return None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_two_hundred_forks_under_two_busy_threads_never_hang_a_child(tmp_path: Path) -> None:
    """Failed before the gate: about 5 in 60 children blocked on a mutex SQLite held at fork time."""
    with SqliteCheckpointer(tmp_path / "fork.db", synchronous="NORMAL") as cp:
        cp.save("shared", AgentStateSnapshot(messages=[AgentMessage.user("hello")]))
        stop = threading.Event()
        worked = [0, 0]

        def busy(i: int) -> None:
            tid = f"busy-{i}"
            while not stop.is_set():
                cp.update(tid, lambda s: s.messages.append(AgentMessage.user("x")))
                cp.load("shared")
                worked[i] += 1

        threads = [threading.Thread(target=busy, args=(i,), daemon=True) for i in range(2)]
        for thread in threads:
            thread.start()
        hung, failed = [], []
        try:
            for _ in range(FORKS):
                pid = os.fork()
                if pid == 0:  # the child: use the inherited checkpointer once, then leave at once
                    try:
                        loaded = cp.load("shared")
                        os._exit(0 if loaded is not None and loaded.messages[0].content == "hello" else 3)
                    except BaseException:
                        os._exit(4)
                code = _wait(pid, CHILD_TIMEOUT)
                if code is None:
                    hung.append(pid)
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                elif code != 0:
                    failed.append(code)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert hung == [] and failed == []
        assert min(worked) > 0, "the parent threads never ran"
        # The parent still works, and its busy threads' updates all landed in order.
        for i in range(2):
            state = cp.load(f"busy-{i}")
            assert state is not None and len(state.messages) == state.version
