"""Files of the previous release (schema 2: one row per message) open, migrate in one transaction, and load the same."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Dict, List

import pytest

from agents_persist import AgentMessage, AgentStateSnapshot, SqliteCheckpointer, TodoItem
from agents_persist.backends.sqlite import store as sqlite_store
from agents_persist.codec import encode_applied, encode_head, encode_messages
from agents_persist.resources import read_text, sql_statements
from agents_persist.writer import EMPTY_HEAD
from tests.old_release import old_release_digest

OLD_MIGRATIONS = ("0001_schema.sql", "0002_generations_and_keys.sql")
PACKAGE = "agents_persist.backends.sqlite"



def old_database(path: Path, threads: Dict[str, AgentStateSnapshot], **extra: dict) -> None:  # type: ignore[type-arg]
    """A file as release 0.1 wrote it: migrations 1-2, one log row per message, rows written as its save did."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for name in OLD_MIGRATIONS:
        for statement in sql_statements(read_text(PACKAGE, f"sql/{name}")):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {len(OLD_MIGRATIONS)}")
    now = time.time()
    for i, (thread_id, state) in enumerate(threads.items()):
        blobs = encode_messages(state.messages, 0, thread_id)
        conn.executemany(
            "INSERT INTO agents_persist_messages (thread_id, seq, data) VALUES (?, ?, ?)",
            [(thread_id, seq, blob) for seq, blob in enumerate(blobs)],
        )
        options = {"version": 3, "generation": 0, "applied": None, "expires_at": None, **extra.get(thread_id, {})}
        conn.execute(
            """INSERT INTO agents_persist_threads
                   (thread_id, version, message_count, digest, head, updated_at, expires_at, generation, applied)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                thread_id,
                options["version"],
                len(blobs),
                old_release_digest(blobs),
                encode_head(state),
                now - i,
                options["expires_at"],
                options["generation"],
                options["applied"],
            ),
        )
    conn.execute("COMMIT")
    conn.close()


def old_threads() -> Dict[str, AgentStateSnapshot]:
    return {
        "empty": AgentStateSnapshot(),
        "one": AgentStateSnapshot(messages=[AgentMessage.user("hi")], metadata={"k": [1, 2.5, None]}),
        "long": AgentStateSnapshot(
            messages=[AgentMessage.user(f"m{i}" * (i % 7)) for i in range(1200)],
            todos=[TodoItem("write tests", "in_progress")],
        ),
        "keys": AgentStateSnapshot(messages=[AgentMessage.assistant("a"), AgentMessage.tool({"x": 1}, tool_call_id="c")]),
        "expired": AgentStateSnapshot(messages=[AgentMessage.user("gone")]),
    }


def columns(path: Path, table: str) -> List[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def test_an_old_file_migrates_and_loads_every_thread_the_same(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    threads = old_threads()
    old_database(
        path,
        threads,
        keys={"applied": encode_applied([("k1", 2), ("k2", 3)]), "generation": 77},
        expired={"expires_at": time.time() - 5},
    )
    with SqliteCheckpointer(path) as cp:
        assert user_version(path) == sqlite_store.SCHEMA_VERSION
        for thread_id, state in threads.items():
            loaded = cp.load(thread_id)
            if thread_id == "expired":
                assert loaded is None and not cp.exists(thread_id)
                continue
            assert loaded is not None and loaded == state, thread_id
            assert loaded.version == 3 and cp.get_version(thread_id) == 3
        listed = {info.thread_id: info for info in cp.iter_threads()}
        assert set(listed) == set(threads) - {"expired"}
        assert listed["long"].message_count == 1200 and listed["long"].version == 3
        # The idempotency keys written by the old release are still honoured.
        assert cp.update("keys", lambda s: s.messages.append(AgentMessage.user("twice")), idempotency_key="k2").version == 3
        # Saving on top works, and the first save of a migrated thread packs its one-message rows.
        long_state = cp.load("long")
        assert long_state is not None
        long_state.messages.append(AgentMessage.assistant("after the upgrade"))
        assert cp.save("long", long_state) == 4
        with cp.store._transaction() as conn:
            (rows,) = conn.execute("SELECT count(*) FROM agents_persist_messages WHERE thread_id = 'long'").fetchone()
        assert rows < 10, rows
        again = cp.load("long")
        assert again is not None and again.messages == long_state.messages and again.todos == long_state.todos
        assert cp.append("one", [AgentMessage.assistant("hello")]) == 4
        one = cp.load("one")
        assert one is not None and [m.content for m in one.messages] == ["hi", "hello"] and one.metadata == {"k": [1, 2.5, None]}


def test_a_migration_that_fails_half_way_leaves_the_old_file_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "half.db"
    threads = old_threads()
    old_database(path, threads)
    real = sqlite_store.sql_statements

    def failing_after_the_first_statement(text: str) -> List[str]:
        statements = real(text)
        if "ADD COLUMN n INTEGER" in text:
            return [statements[0], "SELECT no_such_function()", *statements[1:]]
        return statements

    monkeypatch.setattr(sqlite_store, "sql_statements", failing_after_the_first_statement)
    with pytest.raises(Exception, match="no_such_function"):
        SqliteCheckpointer(path)
    monkeypatch.undo()
    assert user_version(path) == len(OLD_MIGRATIONS)
    assert "n" not in columns(path, "agents_persist_messages")  # the first ALTER was rolled back too
    assert "tail_seq" not in columns(path, "agents_persist_threads")
    with SqliteCheckpointer(path) as cp:
        for thread_id, state in threads.items():
            if thread_id != "expired":
                assert cp.load(thread_id) == state


def test_a_new_file_has_the_chunk_layout(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with SqliteCheckpointer(path) as cp:
        cp.save("t", AgentStateSnapshot(messages=[AgentMessage.user("x")]))
        cp.append("a", [AgentMessage.user("y")])
        assert cp.load("a") is not None and cp.load("a").metadata == {}  # type: ignore[union-attr]
    assert "n" in columns(path, "agents_persist_messages")
    assert {"tail_seq", "tail_rows"} <= set(columns(path, "agents_persist_threads"))
    assert EMPTY_HEAD  # the head an append creates


def test_a_thread_grown_turn_by_turn_loads_from_a_few_rows(tmp_path: Path) -> None:
    with SqliteCheckpointer(tmp_path / "grown.db", max_connections=1) as cp:
        state = AgentStateSnapshot()
        for turn in range(400):
            state.messages += [AgentMessage.user(f"q{turn} " * 20), AgentMessage.assistant(f"a{turn} " * 40)]
            cp.save("t", state)
        with cp.store._transaction() as conn:
            found = conn.execute(
                "SELECT seq, n, length(data) FROM agents_persist_messages WHERE thread_id = 't' ORDER BY seq"
            ).fetchall()
        assert sum(n for _, n, _ in found) == 800
        assert len(found) <= 800 * 300 // sqlite_store.SEAL_BYTES + sqlite_store.MERGE_ROWS + 1, found
        loaded = cp.load("t")
        assert loaded is not None and loaded.messages == state.messages
