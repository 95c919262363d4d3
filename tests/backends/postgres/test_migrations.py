"""setup() and migrations: recorded versions, concurrent first setups, newer schemas, dropped tables."""

from __future__ import annotations

import multiprocessing
import os
from importlib import resources
from typing import Any

import pytest
from psycopg2 import sql

from agents_persist import ConfigurationError, PostgresCheckpointer
from agents_persist.backends.postgres import schema as pg_schema
from tests.backends.postgres.helpers import admin, scalar, snapshot, table
from tests.fixtures.postgres import drop_schema


def test_setup_records_migrations_and_rerunning_is_a_no_op(pg_url: str, fresh_schema: str) -> None:
    migrations = table(fresh_schema, "agents_persist_migrations")
    with PostgresCheckpointer(pg_url, schema=fresh_schema) as first:
        first.setup()
    with admin(pg_url) as cursor:
        cursor.execute(sql.SQL("SELECT version, applied_at FROM {}").format(migrations))
        recorded = cursor.fetchall()
    assert [version for version, _ in recorded] == [pg_schema.SCHEMA_VERSION]
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
        checkpointer.save("probe", snapshot(str(os.getpid())))
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
        cursor.execute(sql.SQL("SELECT version FROM {}").format(table(fresh_schema, "agents_persist_migrations")))
        assert cursor.fetchall() == [(pg_schema.SCHEMA_VERSION,)]
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
