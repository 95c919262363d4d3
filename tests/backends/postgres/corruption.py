"""Damage a stored PostgreSQL thread with plain SQL (as another program, a bad restore or an attacker could).

The checks that follow are those of every backend (:mod:`tests.contract.corruption`).
Statements name the tables as ``{threads}`` and ``{log}``; values the
server's types or constraints refuse make :func:`damage` return False.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import psycopg2
from psycopg2 import sql

from tests.backends.postgres.helpers import admin

Statement = Tuple[str, Sequence[Any]]
#: The columns the library reads, with their declared types (the fuzz casts every value to them).
THREAD_COLUMNS = {
    "version": "bigint",
    "message_count": "integer",
    "digest": "bytea",
    "head": "bytea",
    "updated_at": "double precision",
    "expires_at": "double precision",
    "generation": "bigint",
    "applied_keys": "bytea[]",
    "applied_versions": "bigint[]",
    "tail_rows": "integer",
}
LOG_COLUMNS = {"seq": "integer", "n": "integer", "tier": "smallint", "data": "bytea"}
TABLE = "agents_persist"


def tables(schema: str) -> dict:  # type: ignore[type-arg]
    return {"threads": sql.Identifier(schema, TABLE), "log": sql.Identifier(schema, f"{TABLE}_log")}


def damage(url: str, schema: str, statements: Sequence[Statement]) -> bool:
    """Run the statements in one transaction; False if the server refused them (a type, range or key constraint)."""
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn.cursor() as cursor:
            for text, params in statements:
                cursor.execute(sql.SQL(text).format(**tables(schema)), params)
        conn.commit()
        return True
    except psycopg2.Error:
        conn.rollback()
        return False
    finally:
        conn.close()


def rows_left(url: str, schema: str, thread_id: str) -> int:
    """Head and log rows stored under ``thread_id``."""
    names = tables(schema)
    with admin(url) as cursor:
        query = "SELECT (SELECT count(*) FROM {threads} WHERE thread_id = %s) + (SELECT count(*) FROM {log} WHERE thread_id = %s)"
        cursor.execute(sql.SQL(query).format(**names), (thread_id, thread_id))
        return int(cursor.fetchone()[0])


class Backup:
    """The victim's rows copied into two tables of the test's own, to put them back before each fuzz case."""

    def __init__(self, url: str, schema: str, thread_id: str) -> None:
        self.url, self.schema, self.thread_id = url, schema, thread_id
        self.names = {
            **tables(schema),
            "bt": sql.Identifier(schema, "fuzz_backup_threads"),
            "bl": sql.Identifier(schema, "fuzz_backup_log"),
        }
        self._run(
            [
                "DROP TABLE IF EXISTS {bt}, {bl}",
                "CREATE TABLE {bt} AS SELECT * FROM {threads} WHERE thread_id = %(t)s",
                "CREATE TABLE {bl} AS SELECT * FROM {log} WHERE thread_id = %(t)s",
            ]
        )

    def _run(self, statements: List[str]) -> None:
        with admin(self.url) as cursor:
            cursor.execute("BEGIN")
            for text in statements:
                cursor.execute(sql.SQL(text).format(**self.names), {"t": self.thread_id})
            cursor.execute("COMMIT")

    def restore(self) -> None:
        self._run(
            [
                "DELETE FROM {threads} WHERE thread_id = %(t)s",
                "DELETE FROM {log} WHERE thread_id = %(t)s",
                "INSERT INTO {threads} SELECT * FROM {bt}",
                "INSERT INTO {log} SELECT * FROM {bl}",
            ]
        )

    def drop(self) -> None:
        self._run(["DROP TABLE IF EXISTS {bt}, {bl}"])
