"""Helpers of the PostgreSQL backend tests: an admin cursor of the test itself, row inspection, waiting."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Tuple, Union

import psycopg2
import psycopg2.pool
from psycopg2 import sql

from agents_persist import AgentMessage, AgentStateSnapshot
from tests.servers import ExternalServer, PostgresServer

Server = Union[PostgresServer, ExternalServer]
#: Generous bound for "raised quickly, did not hang" (connect_timeout is 3 s in these tests).
NO_HANG_SECONDS = 8.0


@contextmanager
def admin(url: str) -> Iterator[Any]:
    """An autocommit psycopg2 cursor of the test itself (not the library's)."""
    conn = psycopg2.connect(url, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            yield cursor
    finally:
        conn.close()


def scalar(url: str, query: Any, params: Tuple[Any, ...] = ()) -> Any:
    with admin(url) as cursor:
        cursor.execute(query, params)
        row = cursor.fetchone()
    return None if row is None else row[0]


def table(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def snapshot(*texts: str) -> AgentStateSnapshot:
    return AgentStateSnapshot(messages=[AgentMessage.user(t) for t in texts])


def with_app_name(url: str, app: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={app}"


def backend_pids(url: str, app: str) -> List[int]:
    with admin(url) as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s ORDER BY pid", (app,))
        return [row[0] for row in cursor.fetchall()]


def wait_for(predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)



def log_rows(url: str, schema: str, thread_id: str) -> List[Tuple[int, int, int]]:
    """(seq, n, tier) of every log row of ``thread_id``, in order."""
    with admin(url) as cursor:
        cursor.execute(
            sql.SQL("SELECT seq, n, tier FROM {} WHERE thread_id = %s ORDER BY seq").format(
                table(schema, "agents_persist_log")
            ),
            (thread_id,),
        )
        return [tuple(row) for row in cursor.fetchall()]


def assert_contiguous(rows: List[Tuple[int, int, int]], count: int) -> None:
    assert all(seq == sum(n for _, n, _ in rows[:i]) for i, (seq, _, _) in enumerate(rows)), rows
    assert sum(n for _, n, _ in rows) == count, rows



@contextmanager
def row_locks(url: str, schema: str, thread_ids: List[str]) -> Iterator[Any]:
    """Hold FOR UPDATE locks on the head rows of ``thread_ids`` from an outside session."""
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                sql.SQL("SELECT thread_id FROM {} WHERE thread_id = ANY (%s) FOR UPDATE").format(table(schema, "agents_persist")),
                (thread_ids,),
            )
            assert cursor.rowcount == len(thread_ids)
            yield conn
    finally:
        conn.rollback()
        conn.close()


def load_while_writing(write: Callable[[threading.Event], None], load: Callable[[], None], seconds: float = 2.0) -> None:
    """Run ``write(stop)`` in a thread and call ``load()`` over and over for ``seconds`` or until the writer ends."""
    stop = threading.Event()
    thread = threading.Thread(target=write, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and thread.is_alive():
            load()
    finally:
        stop.set()
        thread.join(30)
