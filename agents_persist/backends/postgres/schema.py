"""Names, SQL text and migrations of the PostgreSQL backend.

The SQL lives in ``sql/`` as package data: ``sql/queries.sql`` holds the
statements sent at run time, ``sql/NNNN_<what>.sql`` the migrations, numbered
as recorded in ``<table_name>_migrations`` (so a database keeps its version
across releases). Identifiers in braces are filled in, always quoted, by
``psycopg2.sql.Identifier``; they are validated first, so no name can end a
quoted identifier or the dollar-quoted function bodies they are written into.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any, Dict, NamedTuple, Optional, Tuple

import psycopg2
from psycopg2 import sql

from ...errors import ConfigurationError
from ...resources import read_text
from . import backfill
from .classify import MISSING_OBJECT_ERRORS

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "MAX_TABLE_NAME_BYTES",
    "split_table_name",
    "advisory_key",
    "object_names",
    "render_queries",
    "applied_version",
    "migrate",
]

logger = logging.getLogger(__name__)

DEFAULT_SCHEMA = "public"
#: Identifiers are always quoted; this keeps them readable and free of SQL syntax (no quotes,
#: no "$", which could end the dollar-quoted function bodies they are written into).
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
MAX_IDENTIFIER_BYTES = 63
#: Longest suffix added to ``table_name`` for derived objects ("_messages_pkey"), so all names fit 63 bytes.
MAX_TABLE_NAME_BYTES = MAX_IDENTIFIER_BYTES - len("_messages_pkey")


class Migration(NamedTuple):
    """One schema version: its number, the description recorded with it, and its file under ``sql/``.

    A ``backfill`` migration changes data, not the schema: its file holds named
    queries (``-- name:``) that :mod:`.backfill` runs in short batches, each its
    own transaction, so it never locks the tables for long and a killed
    process leaves progress that the next ``setup()`` continues from. It is
    recorded once every row is done.
    """

    version: int
    description: str
    filename: str
    backfill: bool = False


#: Applied in order, each recorded in the migrations table; never renumber or edit a released one.
MIGRATIONS: Tuple[Migration, ...] = (
    Migration(1, "thread heads, message log, save/load/delete/purge functions", "0001_threads_log_functions.sql"),
    Migration(2, "generations and idempotency keys, save2/load2 functions", "0002_generations_and_keys.sql"),
    Migration(3, "SQL interface: <table>_threads and <table>_messages views, mirror columns, save3", "0003_sql_interface.sql"),
    Migration(4, "mirror the threads stored before migration 3", "0004_backfill_mirror.sql", backfill=True),
    Migration(5, "save4/delete2: saves check the head row, forced ones replace garbage", "0005_saves_over_garbage.sql"),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
_NAME_MARK = "-- name:"


def _sql_file(filename: str) -> str:
    return read_text(__package__, f"sql/{filename}")


def _named_queries(text: str) -> Dict[str, str]:
    """The ``-- name: <name>`` sections of ``text``, without comment lines."""
    queries: Dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line.startswith(_NAME_MARK):
            name = line[len(_NAME_MARK) :].strip()
            queries[name] = ""
        elif name is not None and not line.lstrip().startswith("--"):
            queries[name] += line + "\n"
    return {key: query.strip().rstrip(";") for key, query in queries.items()}


_QUERIES = _named_queries(_sql_file("queries.sql"))
#: The named queries of the backfill migrations, by migration version.
BACKFILL_QUERIES = {m.version: _named_queries(_sql_file(m.filename)) for m in MIGRATIONS if m.backfill}


def _validate_identifier(name: object, what: str, max_bytes: int) -> str:
    if not isinstance(name, str) or not IDENTIFIER_RE.match(name):
        raise ConfigurationError(
            f"{what} {name!r} is not allowed: use letters, digits, '_' or '-', starting with a letter or '_'"
        )
    if len(name.encode("utf-8")) > max_bytes:
        raise ConfigurationError(f"{what} {name!r} is longer than {max_bytes} bytes")
    return name


def split_table_name(table_name: str, schema: "str | None") -> Tuple[str, str]:
    """Validate ``[schema.]table`` and an explicit ``schema``; return (schema, table)."""
    if not isinstance(table_name, str):
        raise ConfigurationError(f"table_name must be a str, not {type(table_name).__name__}")
    if table_name.count(".") > 1:
        raise ConfigurationError(f"table_name {table_name!r} has more than one '.'")
    if "." in table_name:
        qualifier, table_name = table_name.split(".")
        if schema is not None and schema != qualifier:
            raise ConfigurationError(f"schema {schema!r} contradicts the qualified table_name {qualifier}.{table_name}")
        schema = qualifier
    schema = _validate_identifier(DEFAULT_SCHEMA if schema is None else schema, "schema", MAX_IDENTIFIER_BYTES)
    if schema.lower().startswith("pg_"):
        raise ConfigurationError(f"schema {schema!r} is reserved: names starting with 'pg_' belong to PostgreSQL")
    return schema, _validate_identifier(table_name, "table_name", MAX_TABLE_NAME_BYTES)


def advisory_key(schema: str, table: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock``, one per (schema, table)."""
    digest = hashlib.blake2b(f"agents_persist:{schema}.{table}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def object_names(schema: str, table: str) -> Dict[str, Any]:
    """Quoted, schema-qualified identifiers of every object of one store, by placeholder name."""

    def qualified(name: str) -> Any:
        return sql.Identifier(schema, name)

    return {
        "schema": sql.Identifier(schema),
        "threads": qualified(table),
        "messages": qualified(f"{table}_messages"),
        "log": qualified(f"{table}_log"),
        "log_name": sql.Identifier(f"{table}_log"),
        "threads_view": qualified(f"{table}_threads"),
        "save3_fn": qualified(f"{table}_save3"),
        "save4_fn": qualified(f"{table}_save4"),
        "delete2_fn": qualified(f"{table}_delete2"),
        "purge_batch_fn": qualified(f"{table}_purge_batch"),
        "search_fn": qualified(f"{table}_search"),
        "migrations": qualified(f"{table}_migrations"),
        "save_fn": qualified(f"{table}_save"),
        "load_fn": qualified(f"{table}_load"),
        "save2_fn": qualified(f"{table}_save2"),
        "load2_fn": qualified(f"{table}_load2"),
        "delete_fn": qualified(f"{table}_delete"),
        "purge_fn": qualified(f"{table}_purge"),
        "threads_pkey": sql.Identifier(f"{table}_pkey"),
        "messages_pkey": sql.Identifier(f"{table}_messages_pkey"),
        "updated_idx": sql.Identifier(f"{table}_updated_idx"),
        "expires_idx": sql.Identifier(f"{table}_expires_idx"),
    }


def _render(template: str, names: Dict[str, Any], conn: Any) -> str:
    return str(sql.SQL(template).format(**names).as_string(conn))


def render_queries(names: Dict[str, Any], conn: Any) -> Dict[str, str]:
    """Every statement of ``queries.sql`` with ``names`` filled in (quoting needs a connection)."""
    return {name: _render(template, names, conn) for name, template in _QUERIES.items()}


def applied_version(cursor: Any, queries: Dict[str, str]) -> int:
    """The newest recorded migration, 0 if the migrations table does not exist yet."""
    try:
        cursor.execute(queries["applied"])
    except MISSING_OBJECT_ERRORS:
        return 0
    row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(cursor: Any, queries: Dict[str, str], names: Dict[str, Any], *, schema: str, table: str) -> int:
    """Apply missing migrations; return the version now recorded.

    Schema migrations run in one transaction under the advisory lock: many
    processes may run this at once on an empty database, the lock makes them
    take turns, and each one after the first finds every version recorded. A
    backfill migration runs in batches of its own (see :class:`Migration`)
    between two such transactions, and the second records it.
    """
    applied = _apply_scripts(cursor, queries, names, schema=schema, table=table, finished=None)
    while applied < SCHEMA_VERSION:
        migration = MIGRATIONS[applied]  # versions are 1, 2, ...: this is version applied + 1
        logger.info("running agents_persist backfill migration %d on %s.%s", migration.version, schema, table)
        steps = {name: _render(text, names, cursor.connection) for name, text in BACKFILL_QUERIES[migration.version].items()}
        backfill.run(cursor, steps)
        applied = _apply_scripts(cursor, queries, names, schema=schema, table=table, finished=migration)
    return applied


def _apply_scripts(
    cursor: Any, queries: Dict[str, str], names: Dict[str, Any], *, schema: str, table: str, finished: Optional[Migration]
) -> int:
    """One transaction under the advisory lock: record ``finished`` (a backfill just done) unless another
    process did, then apply schema migrations up to the next backfill; return the version recorded."""
    conn = cursor.connection
    cursor.execute("BEGIN")
    try:
        cursor.execute(queries["advisory_lock"], (advisory_key(schema, table),))
        cursor.execute(queries["schema_exists"], (schema,))
        if cursor.fetchone() is None:
            cursor.execute(queries["create_schema"])
        cursor.execute(queries["migrations_table"])
        cursor.execute(queries["migrated_version"])
        applied = int(cursor.fetchone()[0])
        if finished is not None and applied == finished.version - 1:
            cursor.execute(queries["record_migration"], (finished.version, finished.description))
            applied = finished.version
        for migration in MIGRATIONS[applied:]:
            if migration.backfill:
                break
            logger.info("applying agents_persist migration %d to %s.%s", migration.version, schema, table)
            cursor.execute(_render(_sql_file(migration.filename), names, conn))
            cursor.execute(queries["record_migration"], (migration.version, migration.description))
            applied = migration.version
        cursor.execute("COMMIT")
    except BaseException:
        if not conn.closed:
            try:
                cursor.execute("ROLLBACK")
            except psycopg2.Error:
                pass
        raise
    return applied
