"""A caller's psycopg2 pool, and fork safety of both kinds of pool."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from typing import Any

import psycopg2
import psycopg2.pool
import pytest

from agents_persist import AgentMessage, BackendUnavailableError, ConfigurationError, PostgresCheckpointer, from_url
from tests.backends.postgres.helpers import backend_pids, snapshot, with_app_name


def test_callers_pool_is_borrowed_from_and_left_open(pg_url: str, schema: str, prefix: str) -> None:
    pool = psycopg2.pool.ThreadedConnectionPool(1, 4, pg_url)
    try:
        with PostgresCheckpointer(pool=pool, schema=schema) as checkpointer:
            checkpointer.save(prefix + "p", snapshot("pooled"))
            loaded = checkpointer.load(prefix + "p")
            assert loaded is not None and loaded.messages[0].content == "pooled"
            assert "<ThreadedConnectionPool>" in repr(checkpointer)
            checkpointer.delete(prefix + "p")
        conn = pool.getconn()  # still open, and its connections keep their own settings
        assert conn.autocommit is False and not conn.closed
        pool.putconn(conn)
    finally:
        pool.closeall()


def test_exhausted_callers_pool_raises_unavailable(pg_url: str, schema: str) -> None:
    pool = psycopg2.pool.ThreadedConnectionPool(1, 1, pg_url)
    try:
        checkpointer = PostgresCheckpointer(pool=pool, schema=schema)
        checkpointer.setup()
        held = pool.getconn()
        with pytest.raises(BackendUnavailableError, match="no free connection"):
            checkpointer.load("anything")
        pool.putconn(held)
        assert checkpointer.load("anything") is None
        checkpointer.close()
    finally:
        pool.closeall()


def test_forked_child_never_touches_the_parents_connections(pg_url: str, schema: str, prefix: str) -> None:
    app = f"ap-fork-{uuid.uuid4().hex[:8]}"
    checkpointer = from_url(with_app_name(pg_url, app), schema=schema)
    tid = prefix + "fork"
    try:
        checkpointer.save(tid, snapshot("parent"))
        parent_pids = backend_pids(pg_url, app)
        assert len(parent_pids) == 1
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                os.close(read)
                state = checkpointer.load(tid)
                assert state is not None
                state.messages.append(AgentMessage.assistant("child"))
                checkpointer.save(tid, state)
                checkpointer.close()
                os.write(write, str(backend_pids(pg_url, app)).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        child_report = os.read(read, 1000).decode()
        os.close(read)
        assert os.waitstatus_to_exitcode(status) == 0
        assert str(parent_pids[0]) in child_report, "the parent's session must survive the child's start"
        # The parent's pooled connection is the very same session, untouched by the child.
        state = checkpointer.load(tid)
        assert state is not None and [m.content for m in state.messages] == ["parent", "child"]
        assert backend_pids(pg_url, app) == parent_pids
    finally:
        checkpointer.delete(tid)
        checkpointer.close()


def _use_pool_checkpointer_in_child(checkpointer: PostgresCheckpointer, results: Any) -> None:
    try:
        checkpointer.load("anything")
        results.put("no error")
    except ConfigurationError as exc:
        results.put(f"ConfigurationError: {exc}")


def test_callers_pool_is_refused_in_a_forked_child(pg_url: str, schema: str) -> None:
    pool = psycopg2.pool.ThreadedConnectionPool(1, 2, pg_url)
    try:
        checkpointer = PostgresCheckpointer(pool=pool, schema=schema)
        checkpointer.setup()
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        process = ctx.Process(target=_use_pool_checkpointer_in_child, args=(checkpointer, results))
        process.start()
        outcome = results.get(timeout=60)
        process.join(30)
        assert outcome.startswith("ConfigurationError") and "forked child" in outcome
        assert checkpointer.load("anything") is None  # still fine in the parent
        checkpointer.close()
    finally:
        pool.closeall()
