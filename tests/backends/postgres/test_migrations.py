"""setup() and migrations: recorded versions, concurrent first setups, newer schemas, dropped tables."""

from __future__ import annotations

import multiprocessing
import os
import time
from importlib import resources
from typing import Any, Tuple

import pytest
from psycopg2 import sql

from agents_persist import AgentMessage, AgentStateSnapshot, ConfigurationError, PostgresCheckpointer, codec
from agents_persist.backends.postgres import schema as pg_schema
from tests.backends.postgres.helpers import admin, scalar, snapshot, table
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
