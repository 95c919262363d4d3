"""setup() and migrations: recorded versions, concurrent first setups, newer schemas, dropped tables."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from typing import Any, Dict, List, Tuple

import psycopg2
import pytest
from psycopg2 import sql

from agents_persist import AgentMessage, AgentStateSnapshot, ConfigurationError, PostgresCheckpointer, TodoItem, codec
from agents_persist.backends.postgres import schema as pg_schema
from tests.backends.postgres.helpers import admin, backend_pids, scalar, snapshot, table, wait_for, with_app_name
from tests.fixtures.postgres import drop_schema

#: Every migration, as a fresh schema records them.
ALL_VERSIONS = list(range(1, pg_schema.SCHEMA_VERSION + 1))


def test_setup_records_migrations_and_rerunning_is_a_no_op(pg_url: str, fresh_schema: str) -> None:
    migrations = table(fresh_schema, "agents_persist_migrations")
    with PostgresCheckpointer(pg_url, schema=fresh_schema) as first:
        first.setup()
    with admin(pg_url) as cursor:
        cursor.execute(sql.SQL("SELECT version, applied_at FROM {} ORDER BY version").format(migrations))
        recorded = cursor.fetchall()
    assert [version for version, _ in recorded] == ALL_VERSIONS
    for _ in range(2):
        with PostgresCheckpointer(pg_url, schema=fresh_schema) as again:
            again.setup()
            again.setup()
    with admin(pg_url) as cursor:
        cursor.execute(sql.SQL("SELECT version, applied_at FROM {}").format(migrations))
        assert cursor.fetchall() == recorded


def _setup_in_child(url: str, schema: str, barrier: Any, results: Any) -> None:
    try:
        checkpointer = PostgresCheckpointer(url, schema=schema, statement_timeout=60)
        barrier.wait(30)
        checkpointer.setup()
        checkpointer.save("probe", snapshot(str(os.getpid())), force=True)
        checkpointer.close()
        results.put("ok")
    except BaseException as exc:  # pragma: no cover - reported by the parent
        results.put(f"{type(exc).__name__}: {exc}")


def test_eight_processes_setting_up_a_fresh_schema_at_once_agree(pg_url: str, fresh_schema: str) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(8)
    results = ctx.Queue()
    processes = [ctx.Process(target=_setup_in_child, args=(pg_url, fresh_schema, barrier, results)) for _ in range(8)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
    assert outcomes == ["ok"] * 8
    assert scalar(pg_url, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (fresh_schema,)) == 1
    with admin(pg_url) as cursor:
        migrations = table(fresh_schema, "agents_persist_migrations")
        cursor.execute(sql.SQL("SELECT version FROM {} ORDER BY version").format(migrations))
        assert [version for (version,) in cursor.fetchall()] == ALL_VERSIONS
        cursor.execute(sql.SQL("SELECT version FROM {} WHERE thread_id = 'probe'").format(table(fresh_schema, "agents_persist")))
        assert cursor.fetchone() == (8,)


def test_database_with_newer_schema_version_is_refused(pg_url: str, fresh_schema: str) -> None:
    with PostgresCheckpointer(pg_url, schema=fresh_schema) as checkpointer:
        checkpointer.setup()
    with admin(pg_url) as cursor:
        cursor.execute(
            sql.SQL("INSERT INTO {} (version, description) VALUES (%s, 'from the future')").format(
                table(fresh_schema, "agents_persist_migrations")
            ),
            (pg_schema.SCHEMA_VERSION + 1,),
        )
    with PostgresCheckpointer(pg_url, schema=fresh_schema) as newer:
        with pytest.raises(ConfigurationError, match="newer"):
            newer.load("t")


def test_tables_dropped_behind_its_back_are_recreated_on_the_next_call(pg_url: str, fresh_schema: str) -> None:
    with PostgresCheckpointer(pg_url, schema=fresh_schema) as checkpointer:
        checkpointer.save("t", snapshot("before"))
        drop_schema(pg_url, fresh_schema)
        with pytest.raises(ConfigurationError, match="setup"):
            checkpointer.load("t")
        assert checkpointer.load("t") is None
        checkpointer.save("t", snapshot("after"))
        loaded = checkpointer.load("t")
        assert loaded is not None and loaded.messages[0].content == "after"


def test_migration_files_are_numbered_as_recorded() -> None:
    shipped = sorted(
        path.name for path in resources.files(pg_schema.__package__).joinpath("sql").iterdir() if path.name[:4].isdigit()
    )
    assert shipped == [migration.filename for migration in pg_schema.MIGRATIONS]
    assert [migration.version for migration in pg_schema.MIGRATIONS] == list(range(1, len(shipped) + 1))
    assert all(name.startswith(f"{version:04d}_") for version, name in enumerate(shipped, start=1))


def _old_save(url: str, schema: str, thread_id: str, text: str, expires_at: Any = None) -> Tuple[int, int]:
    """A save as a process from before migration 2 sends it: the 14-argument save function of migration 1."""
    blob = codec.encode_message(AgentMessage.user(text))
    head = codec.encode_head(AgentStateSnapshot())
    save = table(schema, "agents_persist_save")
    with admin(url) as cursor:
        cursor.execute(
            sql.SQL("SELECT o_status, o_version FROM {}(%s, NULL, NULL, %s, %s, %s, %s, 1, %s, %s, %s, %s, 16, 1048576)").format(
                save
            ),
            (
                thread_id,
                codec.EMPTY_DIGEST,
                [0],
                [1],
                [blob],
                codec.new_digest(),
                head,
                time.time(),
                expires_at,
            ),
        )
        status, version = cursor.fetchone()
    return int(status), int(version)


def _generation(url: str, schema: str, thread_id: str) -> int:
    return int(
        scalar(
            url, sql.SQL("SELECT generation FROM {} WHERE thread_id = %s").format(table(schema, "agents_persist")), (thread_id,)
        )
    )


def test_a_version_1_store_is_migrated_in_place_and_old_processes_saves_keep_generations_right(
    pg_url: str, fresh_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_schema, "MIGRATIONS", pg_schema.MIGRATIONS[:1])
    monkeypatch.setattr(pg_schema, "SCHEMA_VERSION", 1)
    with PostgresCheckpointer(pg_url, schema=fresh_schema) as old:
        old.setup()
    assert _old_save(pg_url, fresh_schema, "kept", "from version 1") == (0, 1)
    monkeypatch.undo()

    with PostgresCheckpointer(pg_url, schema=fresh_schema) as new:
        loaded = new.load("kept")
        assert loaded is not None and [m.content for m in loaded.messages] == ["from version 1"]
        assert loaded.version == 1 and _generation(pg_url, fresh_schema, "kept") == 0
        loaded.messages.append(AgentMessage.user("from version 2"))
        assert new.save("kept", loaded) == 2  # the loaded incarnation (generation 0) is the stored one
        # A process still on version 1 keeps saving through the old function, which now runs the new one.
        assert _old_save(pg_url, fresh_schema, "old-process", "created", expires_at=time.time() - 1) == (0, 1)
        first = _generation(pg_url, fresh_schema, "old-process")
        assert _old_save(pg_url, fresh_schema, "old-process", "created again") == (0, 1)
        assert _generation(pg_url, fresh_schema, "old-process") not in (0, first)
        again = new.load("old-process")
        assert again is not None and [m.content for m in again.messages] == ["created again"]
    with admin(pg_url) as cursor:
        cursor.execute(
            sql.SQL("SELECT version FROM {} ORDER BY version").format(table(fresh_schema, "agents_persist_migrations"))
        )
        assert [version for (version,) in cursor.fetchall()] == ALL_VERSIONS


# ---------------------------------------------------------------------------------------------- upgrade to the SQL interface

#: The save function of migration 2 as the previous release calls it (19 arguments).
_V2_SAVE = "SELECT o_status, o_version, o_generation FROM {}(" + ", ".join(["%s"] * 19) + ")"


def _v2_store(url: str, schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables and functions exactly as the previous release (schema version 2) leaves them."""
    monkeypatch.setattr(pg_schema, "MIGRATIONS", pg_schema.MIGRATIONS[:2])
    monkeypatch.setattr(pg_schema, "SCHEMA_VERSION", 2)
    with PostgresCheckpointer(url, schema=schema) as old:
        old.setup()
    monkeypatch.undo()


def _v2_save(url: str, schema: str, thread_id: str, turns: List[AgentStateSnapshot]) -> None:
    """Save ``turns`` (each a longer snapshot of the same thread) as the previous release does: a write, then appends."""
    count, digest, version = 0, codec.EMPTY_DIGEST, 0
    with admin(url) as cursor:
        for state in turns:
            blobs = codec.encode_messages(state.messages[count:], count)
            new_digest = codec.new_digest()
            cursor.execute(
                sql.SQL(_V2_SAVE).format(table(schema, "agents_persist_save2")),
                (
                    thread_id,
                    version,
                    None,
                    count if version else None,
                    digest,
                    [count] if blobs else [],
                    [len(blobs)] if blobs else [],
                    [b"".join(blobs)] if blobs else [],
                    len(state.messages),
                    new_digest,
                    codec.encode_head(state),
                    time.time(),
                    None,
                    7,
                    False,
                    None,
                    32,
                    16,
                    1 << 20,
                ),
            )
            status, version, _ = cursor.fetchone()
            assert status == 0
            count, digest = len(state.messages), new_digest


def _old_threads(count: int) -> Dict[str, List[AgentStateSnapshot]]:
    """Threads of 1 to 40 turns (so logs of one row, of appended rows and of merged rows), with varied heads."""
    threads = {}
    for n in range(count):
        turns, messages = [], []
        for turn in range(1 + (n * 7) % 40):
            messages = messages + [AgentMessage.user(f"t{n} q{turn} ünï 🙂"), AgentMessage.assistant({"answer": turn, "x": 1.5})]
            turns.append(
                AgentStateSnapshot(
                    messages=list(messages),
                    metadata={"customer_id": f"c{n % 3}", "n": n},
                    todos=[TodoItem(f"todo {n}")] if n % 2 else [],
                )
            )
        threads[f"old-{n:03d}"] = turns
    return threads


def _v2_store_with_threads(
    url: str, schema: str, monkeypatch: pytest.MonkeyPatch, count: int
) -> Dict[str, List[AgentStateSnapshot]]:
    """A store of the previous release holding ``count`` threads saved by it; returns their turns."""
    _v2_store(url, schema, monkeypatch)
    threads = _old_threads(count)
    for thread_id, turns in threads.items():
        _v2_save(url, schema, thread_id, turns)
    return threads


def _assert_upgraded(url: str, schema: str, cp: PostgresCheckpointer, threads: Dict[str, List[AgentStateSnapshot]]) -> None:
    for thread_id, turns in threads.items():
        loaded = cp.load(thread_id)
        assert loaded is not None and loaded.version == len(turns), thread_id
        assert codec.encode_messages(loaded.messages) == codec.encode_messages(turns[-1].messages)
        assert codec.encode_head(loaded) == codec.encode_head(turns[-1])
    with admin(url) as cursor:
        cursor.execute(
            sql.SQL("SELECT thread_id, message_count, metadata FROM {} ORDER BY thread_id").format(
                table(schema, "agents_persist_threads")
            )
        )
        assert cursor.fetchall() == [(t, len(turns[-1].messages), turns[-1].metadata) for t, turns in sorted(threads.items())]
        cursor.execute(
            sql.SQL("SELECT thread_id, count(*), max(seq) FROM {} GROUP BY thread_id ORDER BY thread_id").format(
                table(schema, "agents_persist_messages")
            )
        )
        assert cursor.fetchall() == [
            (t, len(turns[-1].messages), len(turns[-1].messages) - 1) for t, turns in sorted(threads.items())
        ]
        cursor.execute(sql.SQL("SELECT max(version) FROM {}").format(table(schema, "agents_persist_migrations")))
        assert cursor.fetchone() == (pg_schema.SCHEMA_VERSION,)


def test_a_version_2_store_is_upgraded_in_place_every_thread_loads_identically_and_is_queryable(
    pg_url: str, fresh_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _v2_store_with_threads(pg_url, fresh_schema, monkeypatch, 12)
    with PostgresCheckpointer(pg_url, schema=fresh_schema) as new:
        _assert_upgraded(pg_url, fresh_schema, new, threads)
        # A process of the previous release saves on: correct, and shown as not mirrored until this release saves.
        _v2_save(pg_url, fresh_schema, "from-old-process", [AgentStateSnapshot(messages=[AgentMessage.user("old")])])
        assert (
            scalar(
                pg_url,
                sql.SQL("SELECT metadata FROM {} WHERE thread_id = 'from-old-process'").format(
                    table(fresh_schema, "agents_persist_threads")
                ),
            )
            is None
        )
        again = new.load("from-old-process")
        assert again is not None and [m.content for m in again.messages] == ["old"]
        again.metadata["seen"] = True
        new.save("from-old-process", again)
        assert scalar(
            pg_url,
            sql.SQL("SELECT metadata FROM {} WHERE thread_id = 'from-old-process'").format(
                table(fresh_schema, "agents_persist_threads")
            ),
        ) == {"seen": True}


_KILLABLE_SETUP = r"""
import sys, time
from agents_persist import PostgresCheckpointer
from agents_persist.backends.postgres import backfill
backfill.BATCH_THREADS = 2
slow = backfill._batch
def _slow_batch(*args):
    time.sleep(0.15)
    return slow(*args)
backfill._batch = _slow_batch
PostgresCheckpointer(sys.argv[1], schema=sys.argv[2]).setup()
print("finished")
"""


def _mirrored(url: str, schema: str) -> int:
    """Heads with a mirror (0 before migration 3 added the column)."""
    try:
        query = sql.SQL("SELECT count(*) FROM {} WHERE metadata IS NOT NULL").format(table(schema, "agents_persist"))
        return int(scalar(url, query))
    except psycopg2.errors.UndefinedColumn:
        return 0


def test_an_upgrade_killed_mid_backfill_resumes_where_it_stopped(
    pg_url: str, fresh_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _v2_store_with_threads(pg_url, fresh_schema, monkeypatch, 30)
    child = subprocess.Popen([sys.executable, "-c", _KILLABLE_SETUP, pg_url, fresh_schema], stdout=subprocess.PIPE)
    try:
        wait_for(lambda: _mirrored(pg_url, fresh_schema) >= 6, timeout=60, what="a few backfill batches")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    done = _mirrored(pg_url, fresh_schema)
    assert 6 <= done < 30
    assert scalar(pg_url, sql.SQL("SELECT max(version) FROM {}").format(table(fresh_schema, "agents_persist_migrations"))) == 3
    with PostgresCheckpointer(pg_url, schema=fresh_schema) as new:
        new.setup()
        _assert_upgraded(pg_url, fresh_schema, new, threads)


def test_an_upgrade_killed_inside_the_schema_migration_leaves_version_2_and_runs_again(
    pg_url: str, fresh_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _v2_store_with_threads(pg_url, fresh_schema, monkeypatch, 4)
    app = f"ap-kill-{os.getpid()}"
    blocker = psycopg2.connect(pg_url)
    try:
        with blocker.cursor() as cursor:  # ALTER TABLE of migration 3 waits behind this lock
            cursor.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(table(fresh_schema, "agents_persist")))
        child = subprocess.Popen([sys.executable, "-c", _KILLABLE_SETUP, with_app_name(pg_url, app), fresh_schema])
        try:
            wait_for(
                lambda: scalar(
                    pg_url,
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                    (app,),
                ),
                timeout=60,
                what="the migration to wait",
            )
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(30)
    finally:
        blocker.rollback()
        blocker.close()
    wait_for(lambda: not backend_pids(pg_url, app), timeout=30, what="the killed process's session to end")
    assert scalar(pg_url, sql.SQL("SELECT max(version) FROM {}").format(table(fresh_schema, "agents_persist_migrations"))) == 2
    assert scalar(pg_url, "SELECT to_regclass(%s)", (f'"{fresh_schema}"."agents_persist_log"',)) is None
    with PostgresCheckpointer(pg_url, schema=fresh_schema) as new:
        _assert_upgraded(pg_url, fresh_schema, new, threads)
