"""What only the SQLite backend has: durability settings, file locking, schema versions."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    BackendUnavailableError,
    ConfigurationError,
    SqliteCheckpointer,
    from_url,
)

SYNCHRONOUS_LEVELS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def pragma(cp: SqliteCheckpointer, name: str) -> object:
    with cp.store._transaction() as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_durable_by_default_wal_and_full_sync(tmp_path: Path) -> None:
    with SqliteCheckpointer(tmp_path / "a.db") as cp:
        assert pragma(cp, "journal_mode") == "wal"
        assert SYNCHRONOUS_LEVELS[pragma(cp, "synchronous")] == "FULL"  # type: ignore[index]
        assert pragma(cp, "busy_timeout") == 10_000


def test_synchronous_normal_is_an_option_also_by_url(tmp_path: Path) -> None:
    with from_url(f"sqlite:///{tmp_path}/b.db?synchronous=normal&timeout=2.5") as cp:
        assert isinstance(cp, SqliteCheckpointer)
        assert SYNCHRONOUS_LEVELS[pragma(cp, "synchronous")] == "NORMAL"  # type: ignore[index]
        assert cp.store.timeout == 2.5


@pytest.mark.parametrize("bad", [{"synchronous": "OFF"}, {"timeout": 0}, {"max_connections": 0}])
def test_bad_options_are_refused(tmp_path: Path, bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises((ConfigurationError, ValueError)):
        SqliteCheckpointer(tmp_path / "c.db", **bad)


def test_memory_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        SqliteCheckpointer(":memory:")


def test_data_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with SqliteCheckpointer(path) as cp:
        cp.save("t", AgentStateSnapshot(messages=[AgentMessage.user("persisted")]))
    with SqliteCheckpointer(path) as cp:
        state = cp.load("t")
        assert state is not None and state.messages[0].content == "persisted" and state.version == 1


def test_locked_database_raises_backend_unavailable_within_timeout(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    cp = SqliteCheckpointer(path, timeout=0.3)
    cp.save("t", AgentStateSnapshot(metadata={"n": 1}))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        start = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            cp.save("t", AgentStateSnapshot(metadata={"n": 2}), force=True)
        assert time.monotonic() - start < 3.0
        state = cp.load("t")  # WAL readers are not blocked by a writer
        assert state is not None and state.metadata == {"n": 1}
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert cp.save("t", AgentStateSnapshot(metadata={"n": 3}), force=True) == 2
    cp.close()


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    SqliteCheckpointer(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(ConfigurationError, match="schema version 99"):
        SqliteCheckpointer(path)


def log_rows(cp: SqliteCheckpointer, thread_id: str) -> list:  # type: ignore[type-arg]
    with cp.store._transaction() as conn:
        return conn.execute(
            "SELECT seq, n, length(data) FROM agents_persist_messages WHERE thread_id = ? ORDER BY seq", (thread_id,)
        ).fetchall()


def test_append_writes_only_new_rows(tmp_path: Path) -> None:
    # One pooled connection, so its total_changes counts every row the library writes.
    with SqliteCheckpointer(tmp_path / "g.db", max_connections=1) as cp:
        state = AgentStateSnapshot(messages=[AgentMessage.user(str(i)) for i in range(1000)])
        cp.save("t", state)
        assert [row[:2] for row in log_rows(cp, "t")] == [(0, 1000)]  # one save's messages: one row
        with cp.store._transaction() as conn:
            start_changes = conn.total_changes
        state.messages += [AgentMessage.user("new-1"), AgentMessage.assistant("new-2")]
        cp.save("t", state)
        with cp.store._transaction() as conn:
            changed = conn.total_changes - start_changes
        # 1 row holding the 2 new messages + 1 head row (an upsert counts once); nothing else is touched.
        assert changed == 2, changed
        assert [row[:2] for row in log_rows(cp, "t")] == [(0, 1000), (1000, 2)]
        loaded = cp.load("t")
        assert loaded is not None and loaded.messages == state.messages
        state.messages[0] = AgentMessage.user("edited")
        cp.save("t", state)
        assert [row[:2] for row in log_rows(cp, "t")] == [(0, 1002)]  # the rewrite path really rewrites
        loaded = cp.load("t")
        assert loaded is not None and loaded.messages == state.messages
