"""SqliteStore: threads in one SQLite file; one statement per read, one ``BEGIN IMMEDIATE`` transaction per save.

Statements per call (see ``sql/queries.sql``):

* ``read`` (load): one SELECT of the head row and the log rows together; a
  single statement reads one WAL snapshot, so it needs no BEGIN/COMMIT.
* ``read_head``, ``read_version``, ``list``, ``scan``: one SELECT each.
* ``write``: BEGIN IMMEDIATE, one SELECT of the head's scalars, the log rows
  (one INSERT for a save's new messages, which are packed into one row;
  a rewrite first deletes the old rows), one upsert of the head, COMMIT.
  Every ``MERGE_ROWS``-th append also reads and rewrites the small rows at
  the end of the log (at most about ``SEAL_BYTES``) as one row, so loads
  read a few big rows however the thread grew.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ... import planning
from ...codec import EMPTY_DIGEST, encode_applied
from ...errors import BackendUnavailableError, ConfigurationError, CorruptSnapshotError
from ...models import ThreadInfo
from ...paging import Position
from ...planning import (
    Applied,
    PlannedWrite,
    StoredHead,
    StoredSlice,
    StoredThread,
    Written,
    enforce_precondition,
    is_expired,
    record_applied,
)
from ...resources import read_text, sql_statements
from ...runtime.pool import ConnectionPool
from ...slices import clamp_bound, sliced
from ...store import Store
from . import rows
from .gate import ForkGate

__all__ = ["SqliteStore", "SCHEMA_VERSION", "MIGRATIONS", "MERGE_ROWS", "SEAL_BYTES"]

logger = logging.getLogger(__name__)

#: Numbered migrations in sql/, applied in order; PRAGMA user_version counts those applied.
MIGRATIONS = ("0001_schema.sql", "0002_generations_and_keys.sql", "0003_chunk_rows.sql")
SCHEMA_VERSION = len(MIGRATIONS)
#: An append that would leave this many small rows at the end of the log merges them into one.
MERGE_ROWS = 8
#: A log row of at least this many bytes is sealed: no later merge reads or rewrites it.
SEAL_BYTES = 64 << 10


def _named_queries(text: str) -> Dict[str, str]:
    """The ``-- name: <name>`` sections of a .sql file, without comment lines."""
    _, *pairs = re.split(r"^-- name: *(\w+) *$", text, flags=re.M)
    return {name: "\n".join(sql_statements(body)) for name, body in zip(pairs[::2], pairs[1::2])}


_QUERIES = _named_queries(read_text(__package__, "sql/queries.sql"))


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error:
        pass


def _text(data: bytes) -> str:
    # TEXT that is not UTF-8 (only ever written by someone else) must not fail a whole listing.
    return data.decode("utf-8", "replace")


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
            conn.text_factory = _text
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

    def _error(self, exc: sqlite3.Error, thread_id: Optional[str]) -> Exception:
        """The library error for an SQLite error: busy or I/O trouble, or a damaged file."""
        if isinstance(exc, sqlite3.OperationalError) or not isinstance(exc, sqlite3.DatabaseError):
            return BackendUnavailableError(f"SQLite database {self.path!r} is busy or unavailable: {exc}", thread_id=thread_id)
        whose = f"thread {thread_id!r}: " if thread_id is not None else ""
        return CorruptSnapshotError(f"{whose}SQLite database {self.path!r} is damaged: {exc}", thread_id=thread_id)

    def _read(self, query: str, params: Any, thread_id: Optional[str] = None) -> List[Any]:
        """All rows of one SELECT (one statement: one consistent snapshot, no transaction needed)."""
        with self._gate.passage(), self._pool.connection() as conn:
            try:
                return conn.execute(_QUERIES[query], params).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc, thread_id) from exc

    @contextmanager
    def _transaction(self, immediate: bool = False, thread_id: Optional[str] = None) -> Iterator[sqlite3.Connection]:
        """One transaction on a pooled connection; SQLite errors become typed errors."""
        with self._gate.passage(), self._pool.connection() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            except sqlite3.Error as exc:
                raise self._error(exc, thread_id) from exc
            try:
                yield conn
                conn.commit()
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.rollback()
                raise self._error(exc, thread_id) from exc
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        """Apply the migrations this file lacks, in the caller's transaction (all of them or none)."""
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

    # ------------------------------------------------------------------ reads

    def _head_and_log(self, query: str, params: Any, thread_id: str) -> Optional[Tuple[Any, StoredHead, List[Any]]]:
        """One statement reading the head row then log rows: (head row, its scalars, log rows in order), None if missing."""
        found = self._read(query, params, thread_id)
        if not found:
            return None
        if found[0][0] != 0 or not _in_order(found):
            found = sorted(found, key=_part_and_seq)
            if found[0][0] != 0:
                return None  # no head row: log rows alone are no thread
        first = found[0]
        h, _ = rows.head(first[2:9], thread_id)
        return first, h, found[1:]

    def read_messages(self, thread_id: str, start: Optional[int], stop: Optional[int]) -> Optional[StoredSlice]:
        read = self._head_and_log("load_range", (thread_id, clamp_bound(start), clamp_bound(stop)), thread_id)
        if read is None or is_expired(read[1].expires_at):
            return None
        _, h, log_rows = read
        chunks = [row[1:4] for row in log_rows]
        return sliced(h.version, h.message_count, h.expires_at, start, stop, chunks, thread_id)

    def read(self, thread_id: str) -> Optional[StoredThread]:
        read = self._head_and_log("load", (thread_id,), thread_id)
        if read is None or is_expired(read[1].expires_at):
            return None
        first, h, log_rows = read
        head = rows.head_blob(first[9], thread_id)
        messages = rows.log([row[1:4] for row in log_rows], h.message_count, thread_id)
        return StoredThread(
            h.version, head, messages, h.message_count, h.digest, h.updated_at, h.expires_at, h.generation, h.applied
        )

    def read_head(self, thread_id: str) -> Optional[StoredHead]:
        found = self._read("head", (thread_id,), thread_id)
        return rows.head(found[0], thread_id)[0] if found else None

    def read_version(self, thread_id: str) -> int:
        found = self._read("version", (thread_id,), thread_id)
        if not found:
            return 0
        version, expires_at = found[0]
        version = rows.integer(version, thread_id, "version", 1)
        ends = None if expires_at is None else rows.number(expires_at, thread_id, "expiry time")
        return 0 if is_expired(ends) else version

    def list(self, prefix: Optional[str], limit: int, after: Optional[Position], now: float) -> List[ThreadInfo]:
        params: Dict[str, Any] = {"now": now, "prefix": prefix, "limit": limit}
        if after is not None:
            params.update(after_at=after[0], after_id=after[1])
        return self._summaries("list" if after is None else "list_after", params)

    def scan(self, prefix: Optional[str], after: Optional[str], limit: int, now: float) -> List[ThreadInfo]:
        params = {"now": now, "prefix": prefix, "limit": limit, "after": after}
        return self._summaries("scan" if after is None else "scan_after", params)

    def _summaries(self, query: str, params: Dict[str, Any]) -> List[ThreadInfo]:
        prefix = params["prefix"]
        if prefix is not None and not _encodable(prefix):
            return []  # no stored thread ID holds a lone surrogate
        return [rows.summary(row) for row in self._read(query, params)]

    # ------------------------------------------------------------------ writes

    def write(self, thread_id: str, write: PlannedWrite) -> Written:
        with self._transaction(immediate=True, thread_id=thread_id) as conn:
            live, tail = self._live_head(conn.execute(_QUERIES["write_head"], (thread_id,)).fetchone(), thread_id, write)
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
            if live is None or write.append_from is None:
                conn.execute(_QUERIES["delete_log"], (thread_id,))
                log_rows = rows.pack_messages(write.messages, write.first_seq)
                tail = _tail_of(log_rows, write.message_count)
            else:
                log_rows, tail = self._append_rows(conn, thread_id, write, tail)
            if log_rows:
                _insert(conn, thread_id, log_rows)
            applied = record_applied(applied, write.idempotency_key, version + 1)
            conn.execute(
                _QUERIES["put_head_keeping_blob" if write.keep_head and live is not None else "put_head"],
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
                    *tail,
                ),
            )
        return Written(version + 1, generation)

    @staticmethod
    def _live_head(
        row: Optional[Sequence[Any]], thread_id: str, write: PlannedWrite
    ) -> Tuple[Optional[StoredHead], Tuple[int, int]]:
        """The stored head if live, and its log tail ``(tail_seq, tail_rows)``.

        A head that cannot be read blocks every write that depends on it;
        a forced save (no expected version, no idempotency key, not an
        append) replaces it, as if the thread were not there.
        """
        if row is None:
            return None, (0, 0)
        try:
            head, (tail_seq, tail_rows) = rows.head(row, thread_id)
        except CorruptSnapshotError:
            if write.expected_version is not None or write.idempotency_key is not None or write.keep_head:
                raise
            if write.append_from is not None:
                raise planning.PrefixMismatch(thread_id) from None  # rewrite it all
            logger.warning("thread %r: a forced save replaces its corrupt stored head", thread_id)
            return None, (0, 0)
        if is_expired(head.expires_at, write.updated_at):
            return None, (0, 0)
        count = head.message_count
        if not (
            type(tail_seq) is int and type(tail_rows) is int and 0 <= tail_seq <= count and 0 <= tail_rows <= count - tail_seq
        ):
            tail_seq, tail_rows = count, 0  # unreadable: start a new tail (nothing is lost, rows merge less)
        return head, (tail_seq, tail_rows)

    @staticmethod
    def _append_rows(
        conn: sqlite3.Connection, thread_id: str, write: PlannedWrite, tail: Tuple[int, int]
    ) -> Tuple[List[rows.LogRow], Tuple[int, int]]:
        """The log rows to insert for an append and the new tail; merges the tail when it has grown long."""
        start, end = write.first_seq, write.message_count
        new = rows.pack_messages(write.messages, start)
        tail_seq, tail_rows = tail
        if not new:
            return new, tail
        if len(new[-1][2]) >= SEAL_BYTES:
            return new, (end, 0)
        if tail_rows == 0:
            return new, (start, len(new))
        if tail_rows + len(new) < MERGE_ROWS:
            return new, (tail_seq, tail_rows + len(new))
        old = conn.execute(_QUERIES["tail"], (thread_id, tail_seq, tail_rows + 1)).fetchall()
        if not _is_run(old, tail_seq, tail_rows, start):
            # Not the rows the head describes (a damaged log): leave them; load reports them.
            return new, (start, len(new))
        conn.execute(_QUERIES["delete_log_from"], (thread_id, tail_seq))
        merged = rows.pack([(n, data) for _, n, data in old] + [(n, data) for _, n, data in new], tail_seq)
        return merged, _tail_of(merged, end)

    def delete(self, thread_id: str) -> bool:
        with self._transaction(immediate=True, thread_id=thread_id) as conn:
            row = conn.execute(_QUERIES["exists"], (thread_id,)).fetchone()
            conn.execute(_QUERIES["delete_log"], (thread_id,))
            conn.execute(_QUERIES["delete_head"], (thread_id,))
        if row is None:
            return False
        (expires_at,) = row
        # A corrupt expiry time still names a thread that was there.
        return type(expires_at) not in (int, float) or expires_at != expires_at or not is_expired(float(expires_at))

    def purge(self, now: float) -> int:
        with self._transaction(immediate=True) as conn:
            conn.execute(_QUERIES["purge_logs"], (now,))
            return conn.execute(_QUERIES["purge_heads"], (now,)).rowcount


def _in_order(found: List[Any]) -> bool:
    """Whether a load's rows came head first, then log rows by ascending integer position."""
    seqs = [row[1] for row in found[1:]]
    return all(type(seq) is int for seq in seqs) and all(a < b for a, b in zip(seqs, seqs[1:]))


def _part_and_seq(row: Sequence[Any]) -> Tuple[int, int, int]:
    # Positions that are not integers (a damaged row) sort last; the log check then reports them.
    seq = row[1]
    return (row[0], 0, seq) if type(seq) is int else (row[0], 1, 0)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _tail_of(log_rows: List[rows.LogRow], end: int) -> Tuple[int, int]:
    """The tail after writing ``log_rows`` last: their last row if it is small, else none."""
    if log_rows and len(log_rows[-1][2]) < SEAL_BYTES:
        return log_rows[-1][0], 1
    return end, 0


def _is_run(found: List[Any], seq: int, count: int, end: int) -> bool:
    """Whether ``found`` are exactly ``count`` well-typed log rows covering positions ``seq .. end - 1``."""
    if len(found) != count:
        return False
    for row_seq, n, data in found:
        if row_seq != seq or type(row_seq) is not int or type(n) is not int or n < 1 or type(data) is not bytes:
            return False
        seq += n
    return seq == end


def _insert(conn: sqlite3.Connection, thread_id: str, log_rows: List[rows.LogRow]) -> None:
    params = [(thread_id, seq, n, data) for seq, n, data in log_rows]
    insert = _QUERIES["insert_row"]
    try:
        if len(params) == 1:
            conn.execute(insert, params[0])
        else:
            conn.executemany(insert, params)
    except sqlite3.IntegrityError:
        # Rows past what the head counts (no version holds them) sit where the new rows go: drop them.
        conn.execute(_QUERIES["delete_log_from"], (thread_id, log_rows[0][0]))
        conn.executemany(insert, params)
