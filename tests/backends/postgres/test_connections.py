"""Connections: pool exhaustion, statement timeouts, connections killed by the server, min_connections."""

from __future__ import annotations

import threading
import time
import uuid
from typing import List

import psycopg2
import psycopg2.pool
import pytest
from psycopg2 import sql

from agents_persist import BackendUnavailableError, from_url
from tests.backends.postgres.helpers import (
    NO_HANG_SECONDS,
    backend_pids,
    row_locks,
    scalar,
    snapshot,
    table,
    wait_for,
    with_app_name,
)


def test_pool_exhaustion_raises_unavailable_after_timeout(pg_url: str, schema: str, prefix: str) -> None:
    checkpointer = from_url(pg_url, schema=schema, max_connections=2, timeout=0.5)
    tids = [f"{prefix}busy{i}" for i in range(2)]
    for tid in tids:
        checkpointer.save(tid, snapshot("x"))
    try:
        with row_locks(pg_url, schema, tids):
            blocked = [
                threading.Thread(target=checkpointer.save, args=(tid, snapshot("y")), kwargs={"force": True}) for tid in tids
            ]
            for thread in blocked:
                thread.start()
            time.sleep(0.3)
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="max_connections=2"):
                checkpointer.load(prefix + "other")
            assert 0.4 < time.monotonic() - started < NO_HANG_SECONDS
        for thread in blocked:
            thread.join(30)
        assert [checkpointer.get_version(tid) for tid in tids] == [2, 2]
    finally:
        for tid in tids:
            checkpointer.delete(tid)
        checkpointer.close()


def test_statement_timeout_raises_unavailable_and_connection_is_reusable(pg_url: str, schema: str, prefix: str) -> None:
    checkpointer = from_url(pg_url, schema=schema, statement_timeout=0.5, max_connections=1)
    tid = prefix + "slow"
    checkpointer.save(tid, snapshot("x"))
    try:
        with row_locks(pg_url, schema, [tid]):
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="statement_timeout") as info:
                checkpointer.save(tid, snapshot("y"), force=True)
            assert time.monotonic() - started < NO_HANG_SECONDS
            assert info.value.maybe_applied is False  # the server cancelled the statement: rolled back
        assert checkpointer.save(tid, snapshot("z"), force=True) == 2
    finally:
        checkpointer.delete(tid)
        checkpointer.close()


def test_connection_killed_by_the_server_is_replaced_without_an_error(pg_url: str, schema: str, prefix: str) -> None:
    app = f"ap-kill-{uuid.uuid4().hex[:8]}"
    checkpointer = from_url(with_app_name(pg_url, app), schema=schema, max_connections=1)
    try:
        checkpointer.save(prefix + "k", snapshot("x"))
        (old_pid,) = backend_pids(pg_url, app)
        assert scalar(pg_url, "SELECT pg_terminate_backend(%s)", (old_pid,)) is True
        wait_for(lambda: old_pid not in backend_pids(pg_url, app), what="terminated backend to exit")
        loaded = checkpointer.load(prefix + "k")  # the idle connection is stale: replaced, no error
        assert loaded is not None and loaded.messages[0].content == "x"
        assert backend_pids(pg_url, app) not in ([], [old_pid])
    finally:
        checkpointer.delete(prefix + "k")
        checkpointer.close()


def test_connection_killed_mid_statement_raises_unavailable_then_recovers(pg_url: str, schema: str, prefix: str) -> None:
    app = f"ap-mid-{uuid.uuid4().hex[:8]}"
    checkpointer = from_url(with_app_name(pg_url, app), schema=schema, max_connections=1)
    tid = prefix + "mid"
    checkpointer.save(tid, snapshot("x"))
    errors: List[BaseException] = []

    def blocked_save() -> None:
        try:
            checkpointer.save(tid, snapshot("y"), force=True)
        except BaseException as exc:
            errors.append(exc)

    try:
        with row_locks(pg_url, schema, [tid]):
            thread = threading.Thread(target=blocked_save)
            thread.start()
            query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"
            victim = wait_for(lambda: scalar(pg_url, query, (app,)), what="the save to wait on the row lock")
            scalar(pg_url, "SELECT pg_terminate_backend(%s)", (victim,))
            thread.join(NO_HANG_SECONDS)
            assert not thread.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], BackendUnavailableError)
        assert isinstance(errors[0].__cause__, psycopg2.OperationalError)
        assert errors[0].maybe_applied is True  # the session ended mid-save: its outcome is unknown
        assert checkpointer.save(tid, snapshot("z"), force=True) == 2
        assert victim not in backend_pids(pg_url, app)
    finally:
        checkpointer.delete(tid)
        checkpointer.close()



def test_min_connections_are_opened_by_setup(pg_url: str, schema: str) -> None:
    app = f"ap-min-{uuid.uuid4().hex[:8]}"
    checkpointer = from_url(with_app_name(pg_url, app), schema=schema, min_connections=3, max_connections=5)
    try:
        assert backend_pids(pg_url, app) == []  # construction connects nothing
        checkpointer.setup()
        assert len(backend_pids(pg_url, app)) == 3
    finally:
        checkpointer.close()
    wait_for(lambda: backend_pids(pg_url, app) == [], what="close() to end the sessions")



def test_statement_timeout_applies_to_loads_then_loads_work_again(pg_url: str, schema: str, prefix: str) -> None:
    checkpointer = from_url(pg_url, schema=schema, statement_timeout=0.5, max_connections=1)
    tid = prefix + "slowload"
    checkpointer.save(tid, snapshot("x"))
    conn = psycopg2.connect(pg_url, connect_timeout=5)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table(schema, "agents_persist_log")))
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="statement_timeout"):
                checkpointer.load(tid)
            assert time.monotonic() - started < NO_HANG_SECONDS
    finally:
        conn.rollback()
        conn.close()
    try:
        for _ in range(3):
            loaded = checkpointer.load(tid)
            assert loaded is not None and loaded.messages[0].content == "x"
    finally:
        checkpointer.delete(tid)
        checkpointer.close()
