"""Construction of PostgresCheckpointer: identifiers, URLs and DSNs, passwords, the missing driver."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from typing import Dict

import pytest

from agents_persist import BackendUnavailableError, ConfigurationError, PostgresCheckpointer, from_url
from agents_persist.backends.postgres import schema as pg_schema
from tests.backends.postgres.helpers import NO_HANG_SECONDS, admin, backend_pids, snapshot
from tests.servers import free_port


@pytest.mark.parametrize(
    "options",
    [
        {"table_name": "x; drop table y"},
        {"table_name": 'agents"; --'},
        {"table_name": "a.b.c"},
        {"table_name": ""},
        {"table_name": "9lives"},
        {"table_name": "x$body$"},
        {"table_name": "t" * (pg_schema.MAX_TABLE_NAME_BYTES + 1)},
        {"schema": "public; drop schema public"},
        {"schema": "pg_agents"},
        {"schema": "a", "table_name": "b.agents"},
    ],
)
def test_unsafe_names_are_refused_before_any_sql(options: Dict[str, str]) -> None:
    # Nothing listens on that port: a connection attempt would raise BackendUnavailableError instead.
    with pytest.raises(ConfigurationError):
        PostgresCheckpointer(f"postgresql://nobody@127.0.0.1:{free_port()}/db", **options)


def test_hyphenated_and_schema_qualified_names_work_quoted(pg_url: str, schema: str, fresh_schema: str, prefix: str) -> None:
    with PostgresCheckpointer(pg_url, schema=schema, table_name="x-y") as hyphen:
        hyphen.save(prefix + "a", snapshot("one"))
        loaded = hyphen.load(prefix + "a")
        assert loaded is not None and loaded.messages[0].content == "one"
        hyphen.delete(prefix + "a")
    with PostgresCheckpointer(pg_url, table_name=f"{fresh_schema}.agents") as qualified:
        assert (qualified.schema, qualified.table_name) == (fresh_schema, "agents")
        qualified.save(prefix + "b", snapshot("two"))
        assert qualified.load(prefix + "b") is not None
    with admin(pg_url) as cursor:
        cursor.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN (%s, %s) AND tablename LIKE ANY (%s)",
            (schema, fresh_schema, ["x-y%", "agents%"]),
        )
        tables = set(cursor.fetchall())
    assert {(schema, "x-y"), (schema, "x-y_log"), (schema, "x-y_migrations")} <= tables
    assert {(fresh_schema, "agents"), (fresh_schema, "agents_log"), (fresh_schema, "agents_migrations")} <= tables


def test_from_url_splits_library_options_from_libpq_parameters(pg_url: str, schema: str, prefix: str) -> None:
    app = f"ap-url-{uuid.uuid4().hex[:8]}"
    url = pg_url.replace("postgresql://", "postgres://") + (
        f"?sslmode=disable&application_name={app}&schema={schema}&table_name=viaurl&max_connections=3&timeout=2.5"
    )
    checkpointer = from_url(url)
    try:
        assert isinstance(checkpointer, PostgresCheckpointer)
        assert (checkpointer.schema, checkpointer.table_name) == (schema, "viaurl")
        assert (checkpointer.max_connections, checkpointer.timeout) == (3, 2.5)
        checkpointer.save(prefix + "u", snapshot("x"))
        assert backend_pids(pg_url, app), "libpq parameters (application_name) must reach the server"
        checkpointer.delete(prefix + "u")
    finally:
        checkpointer.close()


def test_passwords_never_appear_in_repr_or_errors() -> None:
    port = free_port()  # nothing listens there
    for dsn in (
        f"postgresql://agent:s3cr3t-pw@127.0.0.1:{port}/db?connect_timeout=2",
        f"host=127.0.0.1 port={port} user=agent password=s3cr3t-pw dbname=db connect_timeout=2",
    ):
        checkpointer = PostgresCheckpointer(dsn)
        assert "s3cr3t-pw" not in repr(checkpointer)
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as info:
            checkpointer.load("t")
        assert time.monotonic() - started < NO_HANG_SECONDS
        assert "s3cr3t-pw" not in str(info.value)
        assert "s3cr3t-pw" not in str(info.value.__cause__)
        checkpointer.close()


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://bob:hunter%zz2@127.0.0.1/db", "host=127.0.0.1 user=bob password=hunter2 secret dbname=db"],
)
def test_malformed_dsn_errors_do_not_quote_the_password(dsn: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        PostgresCheckpointer(dsn)
    assert "hunter" not in str(info.value) and "secret" not in str(info.value)


def test_module_imports_without_psycopg2_and_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['psycopg2'] = None\n"
        "from agents_persist import ConfigurationError, from_url\n"
        "try:\n"
        "    from_url('postgresql://agent:pw@127.0.0.1/db')\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install agents_persist[postgres]" in result.stdout


def test_exactly_one_of_dsn_and_pool_is_required() -> None:
    with pytest.raises(ConfigurationError):
        PostgresCheckpointer()
    with pytest.raises(ConfigurationError):
        PostgresCheckpointer(max_connections=0, dsn="postgresql://h/db")


@pytest.mark.parametrize(
    ("query", "named"),
    [("journal=off", "journal"), ("max_connections=0", "max_connections"), ("timeout=abc", "timeout"), ("pool=x", "pool")],
)
def test_bad_url_options_are_refused_by_name_before_connecting(query: str, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        from_url(f"postgresql://nobody@127.0.0.1:{free_port()}/db?{query}")


def test_url_options_and_libpq_parameters_are_told_apart() -> None:
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/db?statement_timeout=none&connect_timeout=7&sslmode=disable&ssl=true"
    with from_url(url, max_retries=2) as checkpointer:
        assert isinstance(checkpointer, PostgresCheckpointer)
        assert (checkpointer.statement_timeout, checkpointer.connect_timeout, checkpointer.max_retries) == (None, 7.0, 2)
        described = repr(checkpointer)
    assert "sslmode=disable" in described and "ssl=true" in described
    assert "statement_timeout" not in described and "connect_timeout" not in described
