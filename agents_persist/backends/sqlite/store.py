"""SqliteStore: threads in one SQLite file, one ``BEGIN IMMEDIATE`` transaction per save."""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Tuple

from ...codec import EMPTY_DIGEST
from ...errors import BackendUnavailableError, ConfigurationError
from ...models import ThreadInfo
from ...paging import Position, thread_info
from ...planning import PlannedWrite, StoredThread, enforce_precondition, is_expired
from ...resources import read_text, sql_statements
from ...runtime.pool import ConnectionPool
from ...store import Store
from .gate import ForkGate

__all__ = ["SqliteStore", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
_SCHEMA = tuple(sql_statements(read_text(__package__, "schema.sql")))
_HEAD_COLUMNS = "version, message_count, digest, head, updated_at, expires_at"


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error:
        pass


class SqliteStore(Store):
    """The storage primitives over one SQLite file (see :class:`~agents_persist.SqliteCheckpointer`)."""

    name = "SQLite"

    def __init__(self, path: str, *, timeout: float, max_connections: int, synchronous: str) -> None:
        self.path = path
        self.timeout = timeout
        self.synchronous = synchronous
        self.max_connections = max_connections
        self._gate = ForkGate()
        self._pool: ConnectionPool[sqlite3.Connection] = ConnectionPool(
            self._connect,
            _close_quietly,
            max_size=max_connections,
            timeout=timeout,
            is_broken=self._is_broken,
            name="SQLite",
        )
        with self._transaction(immediate=True) as conn:
            self._ensure_schema(conn)

    def describe(self) -> str:
        return f"{self.path!r}, synchronous={self.synchronous!r}"

    # ------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        return conn

    @staticmethod
    def _is_broken(conn: sqlite3.Connection, exc: BaseException) -> bool:
        # Conflicts and other library errors leave the connection healthy.
        return isinstance(exc, (sqlite3.Error, BackendUnavailableError)) or not isinstance(exc, Exception)

    @contextmanager
    def _transaction(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction on a pooled connection; SQLite errors become typed errors."""
        with self._gate.passage(), self._pool.connection() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            except sqlite3.OperationalError as exc:
                raise BackendUnavailableError(f"SQLite database {self.path!r} is busy or unavailable: {exc}") from exc
            try:
                yield conn
                conn.commit()
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.rollback()
                raise BackendUnavailableError(f"SQLite database {self.path!r} failed: {exc}") from exc
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        (found,) = conn.execute("PRAGMA user_version").fetchone()
        if found > SCHEMA_VERSION:
            raise ConfigurationError(
                f"{self.path!r} has schema version {found}, newer than this agents_persist knows ({SCHEMA_VERSION})"
            )
        if found < SCHEMA_VERSION:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._pool.close()

    # ------------------------------------------------------------------ primitives

    def _head_row(self, conn: sqlite3.Connection, thread_id: str, now: float) -> Optional[Tuple[Any, ...]]:
        row = conn.execute(f"SELECT {_HEAD_COLUMNS} FROM agents_persist_threads WHERE thread_id = ?", (thread_id,)).fetchone()
        if row is None or is_expired(row[5], now):
            return None
        return tuple(row)

    def read(self, thread_id: str) -> Optional[StoredThread]:
        with self._transaction() as conn:
            row = self._head_row(conn, thread_id, time.time())
            if row is None:
                return None
            messages = [
                data
                for (data,) in conn.execute(
                    "SELECT data FROM agents_persist_messages WHERE thread_id = ? ORDER BY seq", (thread_id,)
                )
            ]
        version, count, digest, head, updated_at, expires_at = row
        return StoredThread(version, head, messages, count, digest, updated_at, expires_at)

    def read_version(self, thread_id: str) -> int:
        with self._transaction() as conn:
            row = self._head_row(conn, thread_id, time.time())
        return 0 if row is None else int(row[0])

    def write(self, thread_id: str, write: PlannedWrite) -> int:
        with self._transaction(immediate=True) as conn:
            row = conn.execute(
                "SELECT version, message_count, digest, expires_at FROM agents_persist_threads WHERE thread_id = ?",
                (thread_id,),
            ).fetchone()
            live = row is not None and not is_expired(row[3], write.updated_at)
            version, count, digest = (row[0], row[1], bytes(row[2])) if live else (0, 0, EMPTY_DIGEST)
            enforce_precondition(thread_id, write, version, count, digest)
            if write.append_from is None or (row is not None and not live):
                conn.execute("DELETE FROM agents_persist_messages WHERE thread_id = ?", (thread_id,))
            conn.executemany(
                "INSERT INTO agents_persist_messages (thread_id, seq, data) VALUES (?, ?, ?)",
                [(thread_id, write.first_seq + i, blob) for i, blob in enumerate(write.messages)],
            )
            conn.execute(
                """INSERT INTO agents_persist_threads
                       (thread_id, version, message_count, digest, head, updated_at, expires_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (thread_id) DO UPDATE SET
                       version = excluded.version, message_count = excluded.message_count,
                       digest = excluded.digest, head = excluded.head,
                       updated_at = excluded.updated_at, expires_at = excluded.expires_at""",
                (thread_id, version + 1, write.message_count, write.digest, write.head, write.updated_at, write.expires_at),
            )
        return version + 1

    def delete(self, thread_id: str) -> bool:
        with self._transaction(immediate=True) as conn:
            row = self._head_row(conn, thread_id, time.time())
            conn.execute("DELETE FROM agents_persist_messages WHERE thread_id = ?", (thread_id,))
            conn.execute("DELETE FROM agents_persist_threads WHERE thread_id = ?", (thread_id,))
        return row is not None

    def list(self, prefix: Optional[str], limit: int, after: Optional[Position], now: float) -> List[ThreadInfo]:
        clauses = ["(expires_at IS NULL OR expires_at > ?)"]
        params: List[Any] = [now]
        if prefix is not None:
            clauses.append("substr(thread_id, 1, ?) = ?")
            params += [len(prefix), prefix]
        if after is not None:
            clauses.append("(updated_at < ? OR (updated_at = ? AND thread_id < ?))")
            params += [after[0], after[0], after[1]]
        params.append(limit)
        with self._transaction() as conn:
            rows = conn.execute(
                f"""SELECT thread_id, version, updated_at, message_count, expires_at
                    FROM agents_persist_threads WHERE {" AND ".join(clauses)}
                    ORDER BY updated_at DESC, thread_id DESC LIMIT ?""",
                params,
            ).fetchall()
        return [thread_info(*row) for row in rows]

    def purge(self, now: float) -> int:
        with self._transaction(immediate=True) as conn:
            expired = [
                tid
                for (tid,) in conn.execute(
                    "SELECT thread_id FROM agents_persist_threads WHERE expires_at IS NOT NULL AND expires_at <= ?",
                    (now,),
                )
            ]
            for thread_id in expired:
                conn.execute("DELETE FROM agents_persist_messages WHERE thread_id = ?", (thread_id,))
                conn.execute("DELETE FROM agents_persist_threads WHERE thread_id = ?", (thread_id,))
        return len(expired)
