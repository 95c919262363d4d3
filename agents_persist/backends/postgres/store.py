"""PostgresStore: a head row plus an append-only message log per thread, one round trip per primitive.

A save is one call of the server-side save function (``save2`` of
``sql/0002_*.sql``), which checks the precondition of
:mod:`agents_persist.planning` and writes in one transaction; a load is one
binary ``COPY`` (:mod:`.copy`).
"""

from __future__ import annotations

import io
import re
import threading
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional

import psycopg2.errors

from ...errors import ConfigurationError
from ...models import ThreadInfo
from ...paging import Position
from ...planning import (
    MAX_APPLIED_KEYS,
    PlannedWrite,
    PrefixMismatch,
    StoredHead,
    StoredSlice,
    StoredThread,
    Written,
    conflict_error,
)
from ...slices import clamp_bound, sliced
from ...store import Store
from ..checks import MAX_INT, corrupt, integer, optional_number, summary
from . import schema as _schema
from .classify import first_line
from .connection import Connections
from .copy import MAX_COUNT, checked_head, encode_key, pack_log, parse_load
from .mirror import head_docs, message_docs

__all__ = ["PostgresStore", "CHUNK_BYTES", "MERGE_ROWS", "SEALED_TIER", "PURGE_BATCH"]

#: Most bytes of encoded messages stored in one log row; longer logs are split.
CHUNK_BYTES = 1 << 20
#: Log compaction: once ``MERGE_ROWS`` rows were appended since the last merge,
#: the save merges them into one row of the next tier, then the newest
#: ``MERGE_ROWS`` rows of that tier if there are as many, and so on (a counter
#: in base ``MERGE_ROWS``), so a thread built by N appends keeps
#: O(MERGE_ROWS * log N) rows and every message is rewritten O(log N) times.
MERGE_ROWS = 16
#: Tier of log rows that are never merged again: rows written by a rewrite, and
#: runs whose merge would exceed ``CHUNK_BYTES`` (the save function's ``sealed``).
SEALED_TIER = 32767
#: Expired threads deleted per transaction by ``purge``.
PURGE_BATCH = 500
#: What the save function's ``o_status`` means besides 0 (saved).
_CONFLICT, _PREFIX_MISMATCH, _DUPLICATE = 1, 2, 3


class PostgresStore(Store):
    """The storage primitives over PostgreSQL (see :class:`~agents_persist.PostgresCheckpointer`).

    The tables are created or migrated by :meth:`setup`, which the first
    primitive calls when needed; a call that finds them dropped makes the
    next one set them up again.
    """

    name = "PostgreSQL"

    def __init__(
        self,
        dsn: Optional[str],
        pool: Any,
        *,
        schema: Optional[str],
        table_name: str,
        min_connections: int,
        max_connections: int,
        timeout: float,
        connect_timeout: float,
        statement_timeout: Optional[float],
    ) -> None:
        self.schema, self.table_name = _schema.split_table_name(table_name, schema)
        if (dsn is None) == (pool is None):
            raise ConfigurationError("pass exactly one of dsn (a postgresql:// URL or libpq string) and pool")
        if dsn is not None and not isinstance(dsn, str):
            raise ConfigurationError(f"dsn must be a str, not {type(dsn).__name__}")
        if not min_connections <= max_connections:
            raise ConfigurationError(f"min_connections must be an int from 0 to max_connections, not {min_connections!r}")
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.timeout = float(timeout)
        self.statement_timeout = None if statement_timeout is None else float(statement_timeout)
        self._names = _schema.object_names(self.schema, self.table_name)
        self._queries: Optional[Dict[str, str]] = None
        self._ready = False
        self._setup_mutex = threading.Lock()
        self._connections = Connections(
            dsn,
            pool,
            max_connections=max_connections,
            timeout=self.timeout,
            connect_timeout=connect_timeout,
            statement_timeout=self.statement_timeout,
            on_missing=self._forget_setup,
        )

    @property
    def connect_timeout(self) -> float:
        """Seconds libpq waits for a new connection (as the DSN or the argument set it)."""
        return self._connections.connect_timeout

    def describe(self) -> str:
        return f"{self._connections.label!r}, schema={self.schema!r}, table_name={self.table_name!r}"

    # ------------------------------------------------------------------ schema

    def setup(self) -> None:
        """Create or migrate the tables, then open ``min_connections``; idempotent (see the checkpointer's ``setup``)."""
        with self._setup_mutex:
            if self._ready:
                return
            with self._connections.connection("set up its tables") as conn:
                if self._queries is None:
                    self._queries = _schema.render_queries(self._names, conn)
                with conn.cursor() as cursor:
                    applied = _schema.applied_version(cursor, self._queries)
                    if applied < _schema.SCHEMA_VERSION:
                        applied = _schema.migrate(cursor, self._queries, self._names, schema=self.schema, table=self.table_name)
            if applied > _schema.SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{self.schema}.{self.table_name} has schema version {applied}, newer than this agents_persist "
                    f"knows ({_schema.SCHEMA_VERSION}); upgrade agents_persist"
                )
            self._connections.prefill(self.min_connections)
            self._ready = True

    def _forget_setup(self) -> None:
        """The tables were dropped behind our back: the next call sets them up again."""
        self._ready = False

    @contextmanager
    def _cursor(self, what: str, *, writes: bool = False) -> Iterator[Any]:
        """A cursor on a ready connection (the schema is set up on first use); ``writes``: see ``Connections.connection``."""
        if not self._ready:
            self.setup()
        with self._connections.connection(what, writes=writes) as conn:
            cursor = conn.cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    def _query(self, name: str) -> str:
        queries = self._queries
        assert queries is not None, "setup() renders the queries"
        return queries[name]

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        self._connections.close()

    def _after_fork_in_child(self) -> None:
        # The pools forget the parent's connections by themselves, without closing them (closing
        # would send libpq's Terminate on the parent's socket); psycopg2 itself
        # skips closing a connection garbage-collected in another process.
        self._setup_mutex = threading.Lock()

    # ------------------------------------------------------------------ primitives

    def read(self, thread_id: str) -> Optional[StoredThread]:
        out = io.BytesIO()
        with self._cursor("load a thread") as cursor:
            # COPY takes no parameters: mogrify quotes them client-side, as execute() does.
            cursor.copy_expert(cursor.mogrify(self._query("load"), (thread_id, time.time())), out)
        parsed = parse_load(out.getvalue(), thread_id)
        if parsed is None:
            return None
        h, messages = parsed
        return StoredThread(
            h.version, h.head, messages, h.message_count, h.digest, h.updated_at, h.expires_at, h.generation, h.applied
        )

    def read_messages(self, thread_id: str, start: Optional[int], stop: Optional[int]) -> Optional[StoredSlice]:
        params = {"thread_id": thread_id, "now": time.time(), "start": clamp_bound(start), "stop": clamp_bound(stop)}
        with self._cursor("read messages of a thread") as cursor:
            cursor.execute(self._query("load_range"), params)
            found = cursor.fetchall()
        if not found or found[0][0] != 0:
            return None
        _, version, count, expires_at, *_ = found[0]
        version = integer(version, thread_id, "version", 1, MAX_INT - 1)
        count = integer(count, thread_id, "message count", 0, MAX_COUNT)
        expires_at = optional_number(expires_at, thread_id, "expiry time")
        chunks = [row[4:7] for row in found[1:]]
        return sliced(version, count, expires_at, start, stop, chunks, thread_id)

    def read_head(self, thread_id: str) -> Optional[StoredHead]:
        with self._cursor("read a thread's head") as cursor:
            cursor.execute(self._query("head"), (thread_id, time.time()))
            row = cursor.fetchone()
        return None if row is None else checked_head(thread_id, row)

    def read_version(self, thread_id: str) -> int:
        with self._cursor("read a version") as cursor:
            cursor.execute(self._query("version"), (thread_id, time.time()))
            row = cursor.fetchone()
        if row is None:
            return 0
        optional_number(row[1], thread_id, "expiry time")  # NaN sorts above every time in SQL: "live"
        return integer(row[0], thread_id, "version", 1, MAX_INT - 1)

    def write(self, thread_id: str, write: PlannedWrite) -> Written:
        """Run the save function, which checks :func:`~agents_persist.planning.precondition`'s rule server-side."""
        seqs, counts, chunks = pack_log(write.messages, write.first_seq, CHUNK_BYTES)
        todos, interrupt, metadata = head_docs(write.head, thread_id)
        params = (
            thread_id,
            write.expected_version,
            write.expected_generation,
            write.append_from,
            write.base_digest,
            seqs,
            counts,
            chunks,
            message_docs(chunks, counts),
            write.message_count,
            write.digest,
            write.head,
            todos,
            interrupt,
            metadata,
            write.updated_at,
            write.expires_at,
            write.new_generation,
            write.keep_head,
            encode_key(write.idempotency_key),
            MAX_APPLIED_KEYS,
            MERGE_ROWS,
            CHUNK_BYTES,
        )
        with self._cursor("save a thread", writes=True) as cursor:
            try:
                cursor.execute(self._query("save"), params)
            except psycopg2.errors.DataCorrupted as exc:  # raised by the save function (migration 5): nothing written
                raise corrupt(thread_id, "head row", f"{first_line(exc)}; nothing was saved") from None
            status, version, generation = cursor.fetchone()
        if status == _CONFLICT:
            expected = write.expected_version
            raise conflict_error(thread_id, expected, int(version), recreated=expected == int(version))
        if status == _PREFIX_MISMATCH:
            raise PrefixMismatch(thread_id)
        return Written(int(version), int(generation), duplicate=status == _DUPLICATE)

    def delete(self, thread_id: str) -> bool:
        with self._cursor("delete a thread", writes=True) as cursor:
            cursor.execute(self._query("delete"), (thread_id, time.time()))
            return bool(cursor.fetchone()[0])

    def list(self, prefix: Optional[str], limit: int, after: Optional[Position], now: float) -> List[ThreadInfo]:
        params = {
            "now": now,
            "limit": limit,
            "pattern": _like_prefix(prefix),
            "after_at": None if after is None else after[0],
            "after_id": None if after is None else after[1],
        }
        return self._threads("list threads", "list", params)

    def scan(self, prefix: Optional[str], after: Optional[str], limit: int, now: float) -> List[ThreadInfo]:
        params = {"now": now, "limit": limit, "pattern": _like_prefix(prefix), "after": after}
        return self._threads("walk threads by ID", "scan", params)

    def _threads(self, what: str, query: str, params: Dict[str, Any]) -> List[ThreadInfo]:
        with self._cursor(what) as cursor:
            cursor.execute(self._query(query), params)
            rows = cursor.fetchall()
        # A row with bad scalars is listed with placeholder values and a warning (as on SQLite).
        return [summary(row) for row in rows]

    def purge(self, now: float) -> int:
        return self._purge("purge expired threads", now, None, PURGE_BATCH)

    def delete_inactive(self, before: float, now: float, batch_size: int) -> int:
        """Delete threads last saved before ``before`` in batches of ``batch_size``, one transaction each.

        Each batch deletes heads and log rows in one statement, skipping heads
        a save holds locked (``FOR UPDATE SKIP LOCKED``), so it never waits for
        a saver and a saver waits for at most one batch.
        """
        return self._purge("delete inactive threads", now, before, batch_size)

    def _purge(self, what: str, now: float, before: Optional[float], batch_size: int) -> int:
        total = 0
        while True:
            with self._cursor(what, writes=True) as cursor:
                cursor.execute(self._query("purge"), {"now": now, "before": before, "limit": batch_size})
                removed = int(cursor.fetchone()[0])
            total += removed
            if removed < batch_size:
                return total


def _like_prefix(prefix: Optional[str]) -> Optional[str]:
    """A LIKE pattern matching IDs that start with ``prefix`` literally (its wildcards escaped)."""
    return None if prefix is None else re.sub(r"([\\%_])", r"\\\1", prefix) + "%"
