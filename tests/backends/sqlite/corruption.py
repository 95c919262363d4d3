"""Damage a stored SQLite thread with plain SQL, then run every read path and the repairs over it.

Shared by the hand-written cases (test_corrupt.py) and the hypothesis fuzz
(test_fuzz.py). :func:`exercise` returns the outcome of ``load`` as a class
name and raises (failing the test) on any outcome outside the contract:
an exception other than :class:`CorruptSnapshotError` naming the thread, a
call slower than :data:`SLOW`, a listing that lost or changed a healthy
thread, or a forced save or delete that did not repair.
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple

from agents_persist import AgentMessage, AgentStateSnapshot, CorruptSnapshotError, SqliteCheckpointer, TodoItem
from agents_persist.cli import main as cli_main

VICTIM = "victim"
HEALTHY = ("healthy-a", "healthy-b", "healthy-c")
#: Seconds any one call may take over a damaged thread (all are milliseconds normally).
SLOW = 5.0
THREAD_COLUMNS = (
    "version",
    "message_count",
    "digest",
    "head",
    "updated_at",
    "expires_at",
    "generation",
    "applied",
    "tail_seq",
    "tail_rows",
)
LOG_COLUMNS = ("seq", "n", "data")


def victim_state() -> AgentStateSnapshot:
    return AgentStateSnapshot(
        messages=[AgentMessage.user("q" * (i % 5)) if i % 2 else AgentMessage.assistant(f"a{i}") for i in range(12)],
        todos=[TodoItem("fix", "pending")],
        metadata={"n": 1, "deep": [[{"x": 1.5}]]},
    )


def build(path: Path) -> Tuple[SqliteCheckpointer, AgentStateSnapshot]:
    """A checkpointer whose file holds the victim (saved in 4 steps, idempotency keys, 4+ log rows) and healthy threads."""
    cp = SqliteCheckpointer(path, synchronous="NORMAL", max_connections=2)
    state = victim_state()
    full = list(state.messages)
    state.messages = full[:3]
    cp.save(VICTIM, state)
    for end in (6, 9):
        state.messages = full[:end]
        cp.save(VICTIM, state)
    cp.update(VICTIM, lambda s: s.messages.extend(full[9:]), idempotency_key="key-1")
    for i, thread_id in enumerate(HEALTHY):
        cp.save(thread_id, AgentStateSnapshot(messages=[AgentMessage.user(f"h{i}")] * (i + 1)))
    loaded = cp.load(VICTIM)
    assert loaded is not None and loaded.messages == full
    return cp, loaded


@contextlib.contextmanager
def raw(cp: SqliteCheckpointer) -> Iterator[sqlite3.Connection]:
    """A plain connection to the file (autocommit), as another program would use it."""
    conn = sqlite3.connect(cp.path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def damage(cp: SqliteCheckpointer, statements: Sequence[Tuple[str, Sequence[Any]]]) -> bool:
    """Run the damaging statements; False if SQLite refused them (a NOT NULL or key constraint)."""
    with raw(cp) as conn:
        try:
            conn.execute("BEGIN")
            for sql, params in statements:
                conn.execute(sql, params)
            conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            return False
    return True


def timed(what: str, fn: Callable[[], Any]) -> Any:
    start = time.monotonic()
    try:
        return fn()
    finally:
        elapsed = time.monotonic() - start
        assert elapsed < SLOW, f"{what} took {elapsed:.1f}s"


def _outcome(what: str, fn: Callable[[], Any]) -> Tuple[str, Any]:
    """("ok", value) or ("corrupt", error) for a call on the victim; anything else fails the test."""
    try:
        return "ok", timed(what, fn)
    except CorruptSnapshotError as exc:
        assert exc.thread_id in (VICTIM, None), f"{what}: {exc!r} names {exc.thread_id!r}"
        assert VICTIM in str(exc) or exc.thread_id is None, f"{what}: {exc}"
        return "corrupt", exc


def _cli(cp: SqliteCheckpointer, *argv: str) -> int:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = timed(f"cli {argv}", lambda: cli_main([*argv, "--url", f"sqlite:///{cp.path}"]))
    assert "Traceback" not in err.getvalue() + out.getvalue(), err.getvalue()
    return int(code)


def check_listings(cp: SqliteCheckpointer, healthy: Dict[str, Tuple[int, int]]) -> None:
    """Every listing path works and shows each healthy thread exactly once, unchanged."""
    seen: List[str] = []
    cursor = None
    for _ in range(20):
        page = timed("list_threads", lambda at=cursor: cp.list_threads(limit=2, cursor=at))  # type: ignore[misc]
        seen += [info.thread_id for info in page.threads]
        for info in page.threads:
            if info.thread_id in healthy:
                assert (info.version, info.message_count) == healthy[info.thread_id] and not info.corrupt
        cursor = page.next_cursor
        if cursor is None:
            break
    walked = [info.thread_id for info in timed("iter_threads", lambda: list(cp.iter_threads(page_size=2)))]
    for thread_id in healthy:
        assert seen.count(thread_id) == 1, (thread_id, seen)
        assert walked.count(thread_id) == 1, (thread_id, walked)
    timed("iter_threads prefix", lambda: list(cp.iter_threads(prefix="vic")))


def exercise(cp: SqliteCheckpointer, original: AgentStateSnapshot, *, cli: bool = False) -> str:
    """Every read path over the damaged victim, then repair it; returns the class of the load's outcome."""
    healthy = {t: (1, i + 1) for i, t in enumerate(HEALTHY)}
    kind, loaded = _outcome("load", lambda: cp.load(VICTIM))
    if kind == "ok":
        kind = "missing" if loaded is None else ("loaded correctly" if loaded == original else "loaded other content")
    _outcome("exists", lambda: cp.exists(VICTIM))
    _outcome("get_version", lambda: cp.get_version(VICTIM))
    check_listings(cp, healthy)
    timed("purge_expired", cp.purge_expired)
    if cli:
        assert _cli(cp, "list") == 0
        assert _cli(cp, "stats") == 0
        assert _cli(cp, "show", VICTIM) in (0, 1, 3)
    # Healthy threads still load.
    for thread_id in HEALTHY:
        state = cp.load(thread_id)
        assert state is not None and len(state.messages) == healthy[thread_id][1]
    # A forced save repairs the victim, whatever is there.
    fresh = AgentStateSnapshot(messages=[AgentMessage.user("repaired"), AgentMessage.assistant("yes")], metadata={"r": 1})
    timed("forced save", lambda: cp.save(VICTIM, fresh, force=True))
    again = cp.load(VICTIM)
    assert again is not None and again == fresh
    again.messages.append(AgentMessage.user("and on"))
    cp.save(VICTIM, again)
    assert cp.load(VICTIM) == again
    check_listings(cp, healthy)
    return kind


def exercise_delete(cp: SqliteCheckpointer) -> None:
    """``delete`` removes whatever the victim has; afterwards it is gone and can be created anew."""
    timed("delete", lambda: cp.delete(VICTIM))
    assert cp.load(VICTIM) is None and not cp.exists(VICTIM)
    with raw(cp) as conn:
        assert conn.execute("SELECT count(*) FROM agents_persist_messages WHERE thread_id = ?", (VICTIM,)).fetchone() == (0,)
    cp.save(VICTIM, AgentStateSnapshot(messages=[AgentMessage.user("new")]))
    state = cp.load(VICTIM)
    assert state is not None and state.version == 1
