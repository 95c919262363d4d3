"""Damage a stored SQLite thread with plain SQL, then run every read path and the repairs over it.

Shared by the hand-written cases (test_corrupt.py) and the hypothesis fuzz
(test_fuzz.py); the checks themselves are those of every backend
(:mod:`tests.contract.corruption`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any, Iterator, Sequence, Tuple

from agents_persist import AgentStateSnapshot, SqliteCheckpointer
from tests.contract import corruption as shared
from tests.contract.corruption import timed

__all__ = ["VICTIM", "HEALTHY", "THREAD_COLUMNS", "LOG_COLUMNS", "build", "raw", "damage", "timed", "exercise"]

NAMES = shared.Names()
VICTIM = NAMES.victim
HEALTHY = NAMES.healthy
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


def build(path: Path) -> Tuple[SqliteCheckpointer, AgentStateSnapshot]:
    """A checkpointer whose file holds the victim (saved in 4 steps, idempotency keys, 4+ log rows) and healthy threads."""
    cp = SqliteCheckpointer(path, synchronous="NORMAL", max_connections=2)
    return cp, shared.build(cp, NAMES)


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


def exercise(cp: SqliteCheckpointer, original: AgentStateSnapshot, *, cli: bool = False) -> str:
    """Every read path over the damaged victim, then repair it; returns the class of the load's outcome."""
    return shared.exercise(cp, original, NAMES, cli_url=f"sqlite:///{cp.path}" if cli else None)


def _log_rows(cp: SqliteCheckpointer) -> int:
    with raw(cp) as conn:
        return int(conn.execute("SELECT count(*) FROM agents_persist_messages WHERE thread_id = ?", (VICTIM,)).fetchone()[0])


def exercise_delete(cp: SqliteCheckpointer) -> None:
    """``delete`` removes whatever the victim has; afterwards it is gone and can be created anew."""
    shared.exercise_delete(cp, NAMES, lambda: _log_rows(cp))
