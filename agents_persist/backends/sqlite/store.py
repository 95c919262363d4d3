"""SqliteStore: threads in one SQLite file, one ``BEGIN IMMEDIATE`` transaction per save."""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Tuple

from ...codec import EMPTY_DIGEST, decode_applied, encode_applied
from ...errors import BackendUnavailableError, ConfigurationError
from ...models import ThreadInfo
from ...paging import Position, thread_info
from ...planning import Applied, PlannedWrite, StoredHead, StoredThread, Written, enforce_precondition, is_expired, record_applied
from ...resources import read_text, sql_statements
from ...runtime.pool import ConnectionPool
from ...store import Store
from .gate import ForkGate

__all__ = ["SqliteStore", "SCHEMA_VERSION", "MIGRATIONS"]

#: Numbered migrations in sql/, applied in order; PRAGMA user_version counts those applied.
MIGRATIONS = ("0001_schema.sql", "0002_generations_and_keys.sql")
SCHEMA_VERSION = len(MIGRATIONS)
_HEAD_COLUMNS = "version, message_count, digest, updated_at, expires_at, generation, applied"


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
        for number in range(found, SCHEMA_VERSION):
            for statement in sql_statements(read_text(__package__, f"sql/{MIGRATIONS[number]}")):
                conn.execute(statement)
        if found < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._pool.close()

    # ------------------------------------------------------------------ primitives

    def _head(self, conn: sqlite3.Connection, thread_id: str, now: Optional[float]) -> Optional[StoredHead]:
        row = conn.execute(f"SELECT {_HEAD_COLUMNS} FROM agents_persist_threads WHERE thread_id = ?", (thread_id,)).fetchone()
        if row is None or is_expired(row[4], now):
            return None
        version, count, digest, updated_at, expires_at, generation, applied = row
        return StoredHead(version, count, bytes(digest), updated_at, expires_at, generation, decode_applied(applied, thread_id))

    def read_head(self, thread_id: str) -> Optional[StoredHead]:
        with self._transaction() as conn:
            return self._head(conn, thread_id, time.time())

    def read(self, thread_id: str) -> Optional[StoredThread]:
        with self._transaction() as conn:
            head = self._head(conn, thread_id, time.time())
            if head is None:
                return None
            (blob,) = conn.execute("SELECT head FROM agents_persist_threads WHERE thread_id = ?", (thread_id,)).fetchone()
            messages = [
                data
                for (data,) in conn.execute(
                    "SELECT data FROM agents_persist_messages WHERE thread_id = ? ORDER BY seq", (thread_id,)
                )
            ]
        h = head
        return StoredThread(
            h.version, blob, messages, h.message_count, h.digest, h.updated_at, h.expires_at, h.generation, h.applied
        )

    def write(self, thread_id: str, write: PlannedWrite) -> Written:
        with self._transaction(immediate=True) as conn:
            stored = conn.execute("SELECT 1 FROM agents_persist_threads WHERE thread_id = ?", (thread_id,)).fetchone()
            live = self._head(conn, thread_id, write.updated_at)
            if live is None:
                duplicate = enforce_precondition(thread_id, write, 0, 0, EMPTY_DIGEST)
                version, generation = 0, write.new_generation
                applied: Applied = ()
            else:
                duplicate = enforce_precondition(
                    thread_id, write, live.version, live.message_count, live.digest, live.generation, live.applied
                )
                version, generation, applied = live.version, live.generation, live.applied
            if duplicate is not None:
                return Written(duplicate, generation, duplicate=True)
            if write.append_from is None or (stored is not None and live is None):
                conn.execute("DELETE FROM agents_persist_messages WHERE thread_id = ?", (thread_id,))
            conn.executemany(
                "INSERT INTO agents_persist_messages (thread_id, seq, data) VALUES (?, ?, ?)",
                [(thread_id, write.first_seq + i, blob) for i, blob in enumerate(write.messages)],
            )
            keep_head = write.keep_head and live is not None
            applied = record_applied(applied, write.idempotency_key, version + 1)
            conn.execute(
                f"""INSERT INTO agents_persist_threads
                       (thread_id, version, message_count, digest, head, updated_at, expires_at, generation, applied)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (thread_id) DO UPDATE SET
                       version = excluded.version, message_count = excluded.message_count,
                       digest = excluded.digest, {"" if keep_head else "head = excluded.head,"}
                       updated_at = excluded.updated_at, expires_at = excluded.expires_at,
                       generation = excluded.generation, applied = excluded.applied""",
                (
                    thread_id,
                    version + 1,
                    write.message_count,
                    write.digest,
                    write.head,
                    write.updated_at,
                    write.expires_at,
                    generation,
                    encode_applied(applied) if applied else None,
                ),
            )
        return Written(version + 1, generation)

    def delete(self, thread_id: str) -> bool:
        with self._transaction(immediate=True) as conn:
            row = self._head(conn, thread_id, time.time())
            conn.execute("DELETE FROM agents_persist_messages WHERE thread_id = ?", (thread_id,))
            conn.execute("DELETE FROM agents_persist_threads WHERE thread_id = ?", (thread_id,))
        return row is not None

    def list(self, prefix: Optional[str], limit: int, after: Optional[Position], now: float) -> List[ThreadInfo]:
        where = ("(updated_at < ? OR (updated_at = ? AND thread_id < ?))", [after[0], after[0], after[1]]) if after else None
        return self._summaries(prefix, where, "updated_at DESC, thread_id DESC", limit, now)

    def scan(self, prefix: Optional[str], after: Optional[str], limit: int, now: float) -> List[ThreadInfo]:
        return self._summaries(prefix, ("thread_id > ?", [after]) if after is not None else None, "thread_id", limit, now)

    def _summaries(
        self, prefix: Optional[str], where: Optional[Tuple[str, List[Any]]], order: str, limit: int, now: float
    ) -> List[ThreadInfo]:
        """Unexpired threads under ``prefix`` (and ``where``), in ``order``, at most ``limit``."""
        clauses = ["(expires_at IS NULL OR expires_at > ?)"]
        params: List[Any] = [now]
        if prefix is not None:
            clauses.append("substr(thread_id, 1, ?) = ?")
            params += [len(prefix), prefix]
        if where is not None:
            clauses.append(where[0])
            params += where[1]
        params.append(limit)
        with self._transaction() as conn:
            rows = conn.execute(
                f"""SELECT thread_id, version, updated_at, message_count, expires_at
                    FROM agents_persist_threads WHERE {" AND ".join(clauses)}
                    ORDER BY {order} LIMIT ?""",
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
