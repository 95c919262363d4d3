"""A call past its deadline: cancelled on the server (nothing applied), or cut and reported as maybe applied.

With ``statement_timeout=None`` or a caller's pool the server does not end a
save waiting on a row lock; the client's deadline does. Cutting the socket
alone would leave the save waiting on the server, to commit once the lock is
released, after the caller was told it failed. The deadlines here are
shortened to 2 s (the cancel is sent after 1 s).
"""

from __future__ import annotations

import time
from typing import Callable, Iterator, List

import psycopg2.pool
import pytest

from agents_persist import AgentMessage, AgentStateSnapshot, BackendUnavailableError, PostgresCheckpointer
from agents_persist.backends.postgres import connection as pg_connection
from tests.backends.postgres.helpers import NO_HANG_SECONDS, row_locks, wait_for

KEY = "job-7"


@pytest.fixture(params=["dsn", "pool"])
def short(
    request: pytest.FixtureRequest, pg_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PostgresCheckpointer]:
    """A checkpointer without a server-side statement timeout whose calls overrun after 1 s, from a DSN or a pool."""
    monkeypatch.setattr(pg_connection, "UNBOUNDED_STATEMENT_SECONDS", 0.5)
    monkeypatch.setattr(pg_connection, "UNRESPONSIVE_GRACE", 1.5)
    if request.param == "dsn":
        checkpointer = PostgresCheckpointer(pg_url, schema=schema, statement_timeout=None, max_connections=2)
        pool = None
    else:
        pool = psycopg2.pool.ThreadedConnectionPool(1, 4, pg_url)
        checkpointer = PostgresCheckpointer(pool=pool, schema=schema, statement_timeout=None, max_connections=2)
    try:
        yield checkpointer
    finally:
        checkpointer.close()
        if pool is not None:
            pool.closeall()


def started(cp: PostgresCheckpointer, tid: str) -> str:
    """``tid``, stored with one message."""
    cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("first")]))
    return tid


def contents(cp: PostgresCheckpointer, tid: str) -> List[str]:
    state = cp.load(tid)
    assert state is not None
    return [m.content for m in state.messages]


def overrun(cp: PostgresCheckpointer, pg_url: str, tid: str, call: Callable[[], object]) -> BackendUnavailableError:
    """Run ``call`` while another session holds the thread's row lock; return the error it raised in time."""
    with row_locks(pg_url, str(cp.schema), [tid]):
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as info:
            call()
        assert time.monotonic() - started < NO_HANG_SECONDS
    return info.value


def test_a_save_blocked_past_its_deadline_is_cancelled_on_the_server_and_never_lands(
    short: PostgresCheckpointer, pg_url: str, prefix: str
) -> None:
    tid = started(short, prefix + "cancelled")
    error = overrun(short, pg_url, tid, lambda: short.append(tid, [AgentMessage.user("late")], idempotency_key=KEY))
    assert error.maybe_applied is False, error
    assert "cancelled" in str(error)
    time.sleep(0.5)  # the lock is free now: a save left waiting on the server would commit here
    assert contents(short, tid) == ["first"] and short.get_version(tid) == 1
    # Not applied, so the retry applies it, once.
    assert short.append(tid, [AgentMessage.user("late")], idempotency_key=KEY) == 2
    assert short.append(tid, [AgentMessage.user("late")], idempotency_key=KEY) == 2
    assert contents(short, tid) == ["first", "late"]


def test_a_save_whose_cancel_fails_is_cut_reported_maybe_applied_and_a_retry_with_its_key_applies_it_once(
    short: PostgresCheckpointer, pg_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tid = started(short, prefix + "cut")
    monkeypatch.setattr(short.store._connections._watchdog, "_cancel", lambda guard: False)
    calls: List[int] = []

    def add_turn(state: AgentStateSnapshot) -> None:
        calls.append(1)
        state.messages.append(AgentMessage.user("turn"))

    error = overrun(short, pg_url, tid, lambda: short.update(tid, add_turn, idempotency_key=KEY))
    assert error.maybe_applied is True, error
    assert "did not answer" in str(error)
    # The cut left the save waiting on the server; with the lock released it commits after all.
    wait_for(lambda: short.get_version(tid) == 2, what="the orphaned save to commit")
    retried = short.update(tid, add_turn, idempotency_key=KEY)
    assert calls == [1], "a retry of an applied key does not run the function again"
    assert [m.content for m in retried.messages] == ["first", "turn"] and retried.version == 2
    assert contents(short, tid) == ["first", "turn"]


def test_every_outcome_of_an_overrun_is_either_not_applied_or_retried_into_one_copy(
    short: PostgresCheckpointer, pg_url: str, prefix: str
) -> None:
    """The property a caller relies on, whichever way the overrun went."""
    tid = started(short, prefix + "either")
    error = overrun(short, pg_url, tid, lambda: short.append(tid, [AgentMessage.user("once")], idempotency_key=KEY))
    time.sleep(0.5)
    if error.maybe_applied:
        short.append(tid, [AgentMessage.user("once")], idempotency_key=KEY)
        assert contents(short, tid) == ["first", "once"]
    else:
        assert contents(short, tid) == ["first"]
