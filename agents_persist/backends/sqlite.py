"""SqliteCheckpointer: the embedded, durable default store for scripts, notebooks and small servers."""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

from ..base import Checkpointer, PlannedWrite, PrefixMismatch, StoredThread
from ..codec import EMPTY_DIGEST
from ..errors import BackendUnavailableError, ConfigurationError
from ..models import ThreadInfo
from ..pool import ConnectionPool
from ..urls import redact_url

__all__ = ["SqliteCheckpointer"]

SCHEMA_VERSION = 1
SYNCHRONOUS_MODES = ("FULL", "NORMAL", "EXTRA")
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS agents_persist_threads (
        thread_id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        message_count INTEGER NOT NULL,
        digest BLOB NOT NULL,
        head BLOB NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL
    )""",
    """CREATE INDEX IF NOT EXISTS agents_persist_threads_updated
        ON agents_persist_threads (updated_at DESC, thread_id DESC)""",
    """CREATE INDEX IF NOT EXISTS agents_persist_threads_expires
        ON agents_persist_threads (expires_at) WHERE expires_at IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS agents_persist_messages (
        thread_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (thread_id, seq)
    ) WITHOUT ROWID""",
)


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error:
        pass


_HEAD_COLUMNS = "version, message_count, digest, head, updated_at, expires_at"


class SqliteCheckpointer(Checkpointer):
    """Stores threads in one SQLite file; safe for many threads and processes on that file.

    Durable by default: WAL journal with ``synchronous=FULL``, so a save that
    returned survives a power cut. ``synchronous="NORMAL"`` is faster and
    still never corrupts the file, but the last saves before a power cut (not
    a process crash) may be lost.

    Each save is one ``BEGIN IMMEDIATE`` transaction: the version check, the
    new messages (or a rewritten log) and the head commit together. Connections
    come from a small bounded pool; a forked child opens its own.

    Layout: ``agents_persist_threads`` (one row per thread: version, counts,
    head blob, timestamps) and ``agents_persist_messages`` keyed by
    ``(thread_id, seq)``, one row per encoded message.

    Args:
        path: Database file (created if missing). ``":memory:"`` is refused:
            each connection would see its own empty database.
        timeout: Seconds to wait for another writer's lock before raising
            :class:`BackendUnavailableError`.
        max_connections: Most connections open at once; callers beyond
            that wait up to ``timeout``.
        synchronous: ``"FULL"`` (default), ``"NORMAL"`` or ``"EXTRA"``.
        ttl: Seconds a thread lives after its last save; None keeps threads.
        max_retries: Retries of ``update`` after a conflict.
    """

    url_schemes = ("sqlite",)

    def __init__(
        self,
        path: "str | os.PathLike[str]",
        *,
        timeout: float = 10.0,
        max_connections: int = 8,
        synchronous: str = "FULL",
        ttl: Optional[float] = None,
        max_retries: int = 50,
    ) -> None:
        super().__init__(ttl=ttl, max_retries=max_retries)
        path = os.fspath(path)
        if not path or path == ":memory:" or path.startswith("file::memory:"):
            raise ConfigurationError("SqliteCheckpointer needs a file path; use InMemoryCheckpointer for memory")
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ConfigurationError(f"synchronous must be one of {SYNCHRONOUS_MODES}, not {synchronous!r}")
        if not timeout > 0:
            raise ConfigurationError("timeout must be positive")
        self.path = os.path.abspath(path)
        self.timeout = float(timeout)
        self.synchronous = synchronous
        self.max_connections = max_connections
        self._pool: ConnectionPool[sqlite3.Connection] = ConnectionPool(
            self._connect,
            _close_quietly,
            max_size=max_connections,
            timeout=self.timeout,
            is_broken=self._is_broken,
            name="SQLite",
        )
        with self._transaction(immediate=True) as conn:
            self._ensure_schema(conn)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> "SqliteCheckpointer":
        """Build from ``sqlite:///relative.db``, ``sqlite:////abs/path.db``; query: ``synchronous``, ``timeout``."""
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError(f"sqlite URLs have no host: use sqlite:///path, not {redact_url(url)!r}")
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        query = dict(parse_qsl(parts.query))
        if "synchronous" in query:
            options.setdefault("synchronous", query.pop("synchronous"))
        if "timeout" in query:
            raw = query.pop("timeout")
            try:
                options.setdefault("timeout", float(raw))
            except ValueError:
                raise ConfigurationError(f"sqlite URL option timeout must be a number of seconds, not {raw!r}") from None
        if query:
            raise ConfigurationError(f"unknown sqlite URL options: {sorted(query)}")
        return cls(path, **options)

    def _describe(self) -> str:
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
        self._check_open()
        with self._pool.connection() as conn:
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

    def _after_fork(self) -> None:
        self._pool.after_fork()

    def _close(self) -> None:
        self._pool.close()

    # ------------------------------------------------------------------ primitives

    def _head_row(self, conn: sqlite3.Connection, thread_id: str, now: float) -> Optional[Tuple[Any, ...]]:
        row = conn.execute(f"SELECT {_HEAD_COLUMNS} FROM agents_persist_threads WHERE thread_id = ?", (thread_id,)).fetchone()
        if row is None or self._is_expired(row[5], now):
            return None
        return tuple(row)

    def _read(self, thread_id: str) -> Optional[StoredThread]:
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

    def _read_version(self, thread_id: str) -> int:
        with self._transaction() as conn:
            row = self._head_row(conn, thread_id, time.time())
        return 0 if row is None else int(row[0])

    def _write(self, thread_id: str, write: PlannedWrite) -> int:
        with self._transaction(immediate=True) as conn:
            row = conn.execute(
                "SELECT version, message_count, digest, expires_at FROM agents_persist_threads WHERE thread_id = ?",
                (thread_id,),
            ).fetchone()
            live = row is not None and not self._is_expired(row[3], write.updated_at)
            version, count, digest = (row[0], row[1], row[2]) if live else (0, 0, EMPTY_DIGEST)
            if write.expected_version is not None and write.expected_version != version:
                raise self._conflict(thread_id, write.expected_version, version)
            if write.append_from is None:
                conn.execute("DELETE FROM agents_persist_messages WHERE thread_id = ?", (thread_id,))
            else:
                if (count, bytes(digest)) != (write.append_from, write.base_digest):
                    raise PrefixMismatch(thread_id)
                if row is not None and not live:
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

    def _delete(self, thread_id: str) -> bool:
        with self._transaction(immediate=True) as conn:
            row = self._head_row(conn, thread_id, time.time())
            conn.execute("DELETE FROM agents_persist_messages WHERE thread_id = ?", (thread_id,))
            conn.execute("DELETE FROM agents_persist_threads WHERE thread_id = ?", (thread_id,))
        return row is not None

    def _list_threads(
        self, prefix: Optional[str], limit: int, after: Optional[Tuple[float, str]], now: float
    ) -> List[ThreadInfo]:
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
        return [self._thread_info(*row) for row in rows]

    def _purge_expired(self, now: float) -> int:
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
