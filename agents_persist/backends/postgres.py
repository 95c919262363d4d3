"""PostgresCheckpointer: threads in PostgreSQL through psycopg2, a head row plus an append-only message log."""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
import select
import struct
import threading
import time
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..base import Checkpointer, PlannedWrite, PrefixMismatch, StoredThread
from ..errors import (
    AgentsPersistError,
    BackendUnavailableError,
    CheckpointerClosedError,
    ConfigurationError,
    CorruptSnapshotError,
)
from ..models import ThreadInfo
from ..registry import Backend
from ..runtime import forking
from ..runtime.pool import ConnectionPool
from ..runtime.watchdog import DeadlineWatchdog
from ..urls import redact_url

if TYPE_CHECKING:
    from psycopg2.extensions import connection as PgConnection
    from psycopg2.extensions import cursor as PgCursor
    from psycopg2.pool import AbstractConnectionPool

__all__ = ["PostgresCheckpointer"]

BACKEND = Backend(
    name="postgres",
    target="agents_persist.backends.postgres:PostgresCheckpointer",
    schemes=("postgresql", "postgres"),
    extra="postgres",
    summary="PostgreSQL: one round trip per save, binary COPY loads.",
)

logger = logging.getLogger(__name__)

DEFAULT_SCHEMA = "public"
DEFAULT_TABLE_NAME = "agents_persist"
DEFAULT_MAX_CONNECTIONS = 10
DEFAULT_MIN_CONNECTIONS = 1
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_STATEMENT_TIMEOUT = 30.0
#: Seconds past the statement timeout after which the client gives up on a
#: server that stopped answering (frozen process, dead host, partition).
UNRESPONSIVE_GRACE = 5.0
#: libpq TCP keepalive settings added unless the DSN sets them: a peer that
#: vanished silently is noticed within about idle + interval * count seconds.
DEFAULT_KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3"}
#: Most bytes of encoded messages stored in one log row; longer logs are split.
CHUNK_BYTES = 1 << 20
#: Log compaction: once ``MERGE_ROWS`` rows were appended since the last merge,
#: the save merges them into one row of the next tier, then the newest
#: ``MERGE_ROWS`` rows of that tier if there are as many, and so on (a counter
#: in base ``MERGE_ROWS``), so a thread built by N appends keeps
#: O(MERGE_ROWS * log N) rows and every message is rewritten O(log N) times.
MERGE_ROWS = 16
#: Tier of log rows that are never merged again: rows written by a rewrite, and
#: runs whose merge would exceed ``CHUNK_BYTES``.
SEALED_TIER = 32767
#: Expired threads deleted per transaction by ``purge_expired``.
PURGE_BATCH = 500
#: Identifiers are always quoted; this keeps them readable and free of SQL syntax (no quotes,
#: no "$", which could end the dollar-quoted function bodies they are written into).
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
MAX_IDENTIFIER_BYTES = 63
#: Longest suffix added to ``table_name`` for derived objects ("_updated_idx"), so all names fit 63 bytes.
MAX_TABLE_NAME_BYTES = MAX_IDENTIFIER_BYTES - len("_messages_pkey")
#: Options that ``from_url`` takes from the query string; everything else goes to libpq.
URL_OPTIONS: Dict[str, Callable[[str], Any]] = {
    "schema": str,
    "table_name": str,
    "min_connections": int,
    "max_connections": int,
    "timeout": float,
    "statement_timeout": float,
    "ttl": float,
    "max_retries": int,
}

# A log row's ``data`` is its messages' encoded blobs concatenated exactly as
# written (no framing): a load hands the concatenation of all rows to
# ``codec.decode_message_stream`` in one call. A SELECT would bring bytea as
# hex text through psycopg2 (twice the bytes, unhexed on arrival); a load
# instead runs ``COPY (SELECT * FROM <table>_load(...)) TO STDOUT (FORMAT
# binary)``, which moves bytea raw, and parses that binary COPY stream here.
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_COPY_HEADER = struct.Struct(">11sii")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
#: Columns the load function returns: the head row fills the first six, each log row only ``data``.
_LOAD_COLUMNS = 7
#: A log row in the binary COPY stream: field count 7, six NULL fields (length -1), then data's length.
_LOG_ROW_PREFIX = _INT16.pack(_LOAD_COLUMNS) + _INT32.pack(-1) * (_LOAD_COLUMNS - 1)
_LOG_ROW_HEADER = len(_LOG_ROW_PREFIX) + 4

# ---------------------------------------------------------------------- SQL
# Placeholders in braces are identifiers filled in by psycopg2.sql.Identifier.

_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS {migrations} (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""

_V1_STATEMENTS = (
    """CREATE TABLE {threads} (
        thread_id text COLLATE "C" NOT NULL,
        version bigint NOT NULL,
        message_count integer NOT NULL,
        digest bytea NOT NULL,
        head bytea NOT NULL,
        updated_at double precision NOT NULL,
        expires_at double precision,
        tail_rows integer NOT NULL DEFAULT 0,
        CONSTRAINT {threads_pkey} PRIMARY KEY (thread_id)
    )""",
    "CREATE INDEX {updated_idx} ON {threads} (updated_at, thread_id)",
    "CREATE INDEX {expires_idx} ON {threads} (expires_at) WHERE expires_at IS NOT NULL",
    """CREATE TABLE {messages} (
        thread_id text COLLATE "C" NOT NULL,
        seq integer NOT NULL,
        n integer NOT NULL,
        tier smallint NOT NULL,
        data bytea NOT NULL,
        CONSTRAINT {messages_pkey} PRIMARY KEY (thread_id, seq)
    )""",
    # lz4 (PostgreSQL 14+ built with it) decompresses long logs several times faster than pglz.
    """DO $do$
    BEGIN
        IF EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
            EXECUTE 'ALTER TABLE {messages} ALTER COLUMN data SET COMPRESSION lz4';
        END IF;
    END
    $do$""",
    """COMMENT ON TABLE {threads} IS
        'agents_persist thread heads: version, message count, prefix digest, encoded head, '
        'updated_at/expires_at as epoch seconds, tail_rows = log rows appended since the last merge'""",
    """COMMENT ON TABLE {messages} IS
        'agents_persist message log: row (thread_id, seq) holds n encoded messages starting at position seq, '
        'concatenated; tier counts the merges that made the row (32767: never merged again)'""",
    # One round trip per save: lock the head (or create it), check the
    # version and the stored prefix, write the new log rows and the head.
    # Returns o_status 0 (saved, o_version = new version), 1 (version
    # conflict, o_version = stored version) or 2 (stored prefix differs).
    # Rows of a rewrite are sealed; appended rows start at tier 0 and are
    # counted in the head's tail_rows. Once p_merge_rows of them accumulated,
    # the newest p_merge_rows rows are merged into one row of the next tier,
    # and so on up while the newest rows share a tier (sealed instead if the
    # merged row would exceed p_chunk_bytes), so most saves never look at the log.
    """CREATE FUNCTION {save_fn}(
        p_thread_id text, p_expected bigint, p_append_from integer, p_base_digest bytea,
        p_seqs integer[], p_counts integer[], p_chunks bytea[],
        p_message_count integer, p_digest bytea, p_head bytea,
        p_now double precision, p_expires_at double precision,
        p_merge_rows integer, p_chunk_bytes integer,
        OUT o_status integer, OUT o_version bigint)
    LANGUAGE plpgsql AS $body$
    DECLARE
        empty_digest CONSTANT bytea := decode(repeat('00', 16), 'hex');
        sealed CONSTANT smallint := 32767;
        cur_version bigint;
        cur_count integer;
        cur_digest bytea;
        cur_expires double precision;
        cur_tail integer;
        cur_tier integer := 0;
        run_rows integer;
        run_bytes bigint;
        run_start integer;
        merged_n integer;
        merged bytea;
    BEGIN
        LOOP
            SELECT t.version, t.message_count, t.digest, t.expires_at, t.tail_rows
              INTO cur_version, cur_count, cur_digest, cur_expires, cur_tail
              FROM {threads} AS t WHERE t.thread_id = p_thread_id FOR UPDATE;
            EXIT WHEN FOUND;
            -- A missing thread is version 0 with an empty log.
            IF p_expected IS NOT NULL AND p_expected <> 0 THEN
                o_status := 1; o_version := 0; RETURN;
            END IF;
            IF p_append_from IS NOT NULL AND (p_append_from <> 0 OR p_base_digest <> empty_digest) THEN
                o_status := 2; o_version := 0; RETURN;
            END IF;
            INSERT INTO {threads} (thread_id, version, message_count, digest, head, updated_at, expires_at)
                VALUES (p_thread_id, 1, p_message_count, p_digest, p_head, p_now, p_expires_at)
                ON CONFLICT (thread_id) DO NOTHING;
            IF FOUND THEN
                DELETE FROM {messages} AS m WHERE m.thread_id = p_thread_id;
                INSERT INTO {messages} (thread_id, seq, n, tier, data)
                    SELECT p_thread_id, u.seq, u.n, sealed, u.data FROM unnest(p_seqs, p_counts, p_chunks) AS u(seq, n, data);
                o_status := 0; o_version := 1; RETURN;
            END IF;
            -- A concurrent save created the thread first: lock its row and decide again.
        END LOOP;
        IF cur_expires IS NOT NULL AND cur_expires <= p_now THEN
            cur_version := 0; cur_count := 0; cur_digest := empty_digest;
        END IF;
        IF p_expected IS NOT NULL AND p_expected <> cur_version THEN
            o_status := 1; o_version := cur_version; RETURN;
        END IF;
        IF p_append_from IS NOT NULL AND (p_append_from <> cur_count OR p_base_digest <> cur_digest) THEN
            o_status := 2; o_version := cur_version; RETURN;
        END IF;
        IF p_append_from IS NULL OR cur_version = 0 THEN
            DELETE FROM {messages} AS m WHERE m.thread_id = p_thread_id;
            INSERT INTO {messages} (thread_id, seq, n, tier, data)
                SELECT p_thread_id, u.seq, u.n, sealed, u.data FROM unnest(p_seqs, p_counts, p_chunks) AS u(seq, n, data);
            cur_tail := 0;
        ELSIF cardinality(p_seqs) > 0 THEN
            INSERT INTO {messages} (thread_id, seq, n, tier, data)
                SELECT p_thread_id, u.seq, u.n, 0, u.data FROM unnest(p_seqs, p_counts, p_chunks) AS u(seq, n, data);
            cur_tail := cur_tail + cardinality(p_seqs);
        END IF;
        IF p_merge_rows > 1 AND cur_tail >= p_merge_rows THEN
            cur_tail := 0;
            WHILE cur_tier < sealed - 1 LOOP
                SELECT count(*) FILTER (WHERE s.tier = cur_tier), sum(octet_length(s.data)), min(s.seq)
                  INTO run_rows, run_bytes, run_start
                  FROM (SELECT m.seq, m.tier, m.data FROM {messages} AS m
                         WHERE m.thread_id = p_thread_id ORDER BY m.seq DESC LIMIT p_merge_rows) AS s;
                EXIT WHEN run_rows < p_merge_rows;
                IF run_bytes > p_chunk_bytes THEN
                    UPDATE {messages} AS m SET tier = sealed WHERE m.thread_id = p_thread_id AND m.seq >= run_start;
                    EXIT;
                END IF;
                SELECT sum(m.n), string_agg(m.data, ''::bytea ORDER BY m.seq) INTO merged_n, merged
                  FROM {messages} AS m WHERE m.thread_id = p_thread_id AND m.seq >= run_start;
                DELETE FROM {messages} AS m WHERE m.thread_id = p_thread_id AND m.seq >= run_start;
                cur_tier := cur_tier + 1;
                INSERT INTO {messages} (thread_id, seq, n, tier, data)
                    VALUES (p_thread_id, run_start, merged_n, cur_tier, merged);
            END LOOP;
        END IF;
        UPDATE {threads} AS t
           SET version = cur_version + 1, message_count = p_message_count, digest = p_digest,
               head = p_head, updated_at = p_now, expires_at = p_expires_at, tail_rows = cur_tail
         WHERE t.thread_id = p_thread_id;
        o_status := 0; o_version := cur_version + 1;
    END
    $body$""",
    # A load is one statement: COPY (SELECT * FROM this function) in binary
    # format. STABLE, so both queries see the snapshot of that statement: head
    # and log come from one committed version. The first row is the head (only
    # if the thread exists and has not expired), then the log rows in order.
    """CREATE FUNCTION {load_fn}(p_thread_id text, p_now double precision)
    RETURNS TABLE (o_version bigint, o_message_count integer, o_digest bytea, o_head bytea,
                   o_updated_at double precision, o_expires_at double precision, o_data bytea)
    LANGUAGE plpgsql STABLE AS $body$
    BEGIN
        RETURN QUERY
            SELECT t.version, t.message_count, t.digest, t.head, t.updated_at, t.expires_at, NULL::bytea
              FROM {threads} AS t
             WHERE t.thread_id = p_thread_id AND (t.expires_at IS NULL OR t.expires_at > p_now);
        IF FOUND THEN
            RETURN QUERY
                SELECT NULL::bigint, NULL::integer, NULL::bytea, NULL::bytea,
                       NULL::double precision, NULL::double precision, m.data
                  FROM {messages} AS m WHERE m.thread_id = p_thread_id ORDER BY m.seq;
        END IF;
    END
    $body$""",
    # The second DELETE runs on a fresh snapshot (READ COMMITTED, volatile
    # function), so it also removes log rows of a save it waited for.
    """CREATE FUNCTION {delete_fn}(p_thread_id text, p_now double precision) RETURNS boolean
    LANGUAGE plpgsql AS $body$
    DECLARE
        old_expires double precision;
        existed boolean;
    BEGIN
        DELETE FROM {threads} AS t WHERE t.thread_id = p_thread_id RETURNING t.expires_at INTO old_expires;
        existed := FOUND;
        DELETE FROM {messages} AS m WHERE m.thread_id = p_thread_id;
        RETURN existed AND (old_expires IS NULL OR old_expires > p_now);
    END
    $body$""",
    """CREATE FUNCTION {purge_fn}(p_now double precision, p_limit integer) RETURNS integer
    LANGUAGE plpgsql AS $body$
    DECLARE
        doomed text[];
    BEGIN
        WITH gone AS (
            DELETE FROM {threads} AS t
             WHERE t.expires_at <= p_now AND t.thread_id IN (
                   SELECT x.thread_id FROM {threads} AS x
                    WHERE x.expires_at <= p_now
                    ORDER BY x.expires_at LIMIT p_limit
                      FOR UPDATE SKIP LOCKED)
            RETURNING t.thread_id)
        SELECT array_agg(gone.thread_id) INTO doomed FROM gone;
        IF doomed IS NULL THEN
            RETURN 0;
        END IF;
        DELETE FROM {messages} AS m WHERE m.thread_id = ANY (doomed);
        RETURN cardinality(doomed);
    END
    $body$""",
)

#: (version, description, statements); applied in order, each recorded in the migrations table.
MIGRATIONS: Tuple[Tuple[int, str, Tuple[str, ...]], ...] = (
    (1, "thread heads, message log, save/load/delete/purge functions", _V1_STATEMENTS),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

_QUERIES = {
    "applied": "SELECT max(version) FROM {migrations}",
    "save": "SELECT o_status, o_version FROM {save_fn}(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
    "load": "COPY (SELECT * FROM {load_fn}(%s, %s)) TO STDOUT (FORMAT binary)",
    "version": "SELECT version FROM {threads} WHERE thread_id = %s AND (expires_at IS NULL OR expires_at > %s)",
    "delete": "SELECT {delete_fn}(%s, %s)",
    "purge": "SELECT {purge_fn}(%s, %s)",
    # psycopg2 sends parameters as literals, so the planner folds away the unused
    # filters, and LIKE with a literal prefix can use the primary key (C collation).
    "list": """SELECT thread_id, version, updated_at, message_count, expires_at FROM {threads}
        WHERE (expires_at IS NULL OR expires_at > %(now)s)
          AND (%(pattern)s::text IS NULL OR thread_id LIKE %(pattern)s)
          AND (%(after_at)s::double precision IS NULL OR (updated_at, thread_id) < (%(after_at)s, %(after_id)s))
        ORDER BY updated_at DESC, thread_id DESC LIMIT %(limit)s""",
}


def _validate_identifier(name: object, what: str, max_bytes: int) -> str:
    if not isinstance(name, str) or not IDENTIFIER_RE.match(name):
        raise ConfigurationError(
            f"{what} {name!r} is not allowed: use letters, digits, '_' or '-', starting with a letter or '_'"
        )
    if len(name.encode("utf-8")) > max_bytes:
        raise ConfigurationError(f"{what} {name!r} is longer than {max_bytes} bytes")
    return name


def _split_table_name(table_name: str, schema: Optional[str]) -> Tuple[str, str]:
    """Validate ``[schema.]table`` and an explicit ``schema``; return (schema, table)."""
    if not isinstance(table_name, str):
        raise ConfigurationError(f"table_name must be a str, not {type(table_name).__name__}")
    if table_name.count(".") > 1:
        raise ConfigurationError(f"table_name {table_name!r} has more than one '.'")
    if "." in table_name:
        qualifier, table_name = table_name.split(".")
        if schema is not None and schema != qualifier:
            raise ConfigurationError(f"schema {schema!r} contradicts the qualified table_name {qualifier}.{table_name}")
        schema = qualifier
    schema = _validate_identifier(DEFAULT_SCHEMA if schema is None else schema, "schema", MAX_IDENTIFIER_BYTES)
    if schema.lower().startswith("pg_"):
        raise ConfigurationError(f"schema {schema!r} is reserved: names starting with 'pg_' belong to PostgreSQL")
    return schema, _validate_identifier(table_name, "table_name", MAX_TABLE_NAME_BYTES)


def _advisory_key(schema: str, table: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock``, one per (schema, table)."""
    digest = hashlib.blake2b(f"agents_persist:{schema}.{table}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _pack_log(blobs: Sequence[bytes], first_seq: int) -> Tuple[List[int], List[int], List[bytes]]:
    """Group encoded messages into log rows of at most ``CHUNK_BYTES``: (seqs, counts, concatenated blobs)."""
    seqs: List[int] = []
    counts: List[int] = []
    chunks: List[bytes] = []
    start = 0
    while start < len(blobs):
        end, size = start, 0
        while end < len(blobs) and (end == start or size + len(blobs[end]) <= CHUNK_BYTES):
            size += len(blobs[end])
            end += 1
        seqs.append(first_seq + start)
        counts.append(end - start)
        chunks.append(b"".join(blobs[start:end]))
        start = end
    return seqs, counts, chunks


class _Head(NamedTuple):
    version: int
    message_count: int
    digest: bytes
    head: bytes
    updated_at: float
    expires_at: Optional[float]


def _parse_load(buf: bytes, thread_id: str) -> Optional[Tuple[_Head, bytes]]:
    """Parse the binary COPY output of the load function: the head row, then the log rows.

    Returns None when there is no head row (missing or expired thread), else
    the head and all log rows' ``data`` concatenated in order.
    """
    try:
        signature, _flags, extension = _COPY_HEADER.unpack_from(buf, 0)
        if signature != _COPY_SIGNATURE:
            raise ValueError("not a binary COPY stream")
        view = memoryview(buf)
        pos = _COPY_HEADER.size + extension
        (fields,) = _INT16.unpack_from(buf, pos)
        if fields == -1:
            return None
        if fields != _LOAD_COLUMNS:
            raise ValueError(f"head row has {fields} columns")
        pos += 2
        values: List[Optional[bytes]] = []
        for _ in range(_LOAD_COLUMNS - 1):
            (length,) = _INT32.unpack_from(buf, pos)
            pos += 4
            if length < 0:
                values.append(None)
            else:
                values.append(bytes(view[pos : pos + length]))
                pos += length
        (length,) = _INT32.unpack_from(buf, pos)
        if length != -1:
            raise ValueError("head row has a log column")
        pos += 4
        version, count, digest, head, updated_at, expires_at = values
        if version is None or count is None or digest is None or head is None or updated_at is None:
            raise ValueError("head row has NULL columns")
        parsed = _Head(
            int.from_bytes(version, "big", signed=True),
            int.from_bytes(count, "big", signed=True),
            digest,
            head,
            struct.unpack(">d", updated_at)[0],
            None if expires_at is None else struct.unpack(">d", expires_at)[0],
        )
        parts: List[memoryview] = []
        prefix, header = _LOG_ROW_PREFIX, _LOG_ROW_HEADER
        while buf[pos : pos + 2] != b"\xff\xff":
            if buf[pos : pos + header - 4] != prefix:
                raise ValueError(f"unexpected log row at byte {pos}")
            (length,) = _INT32.unpack_from(buf, pos + header - 4)
            pos += header
            if length < 0 or pos + length > len(buf):
                raise ValueError(f"log row of bad length {length} at byte {pos}")
            parts.append(view[pos : pos + length])
            pos += length
        if pos + 2 != len(buf):
            raise ValueError("trailing bytes after the end of the COPY stream")
    except (ValueError, struct.error) as exc:
        message = f"thread {thread_id!r}: cannot read the stored thread from PostgreSQL's COPY output: {exc}"
        raise CorruptSnapshotError(message, thread_id=thread_id) from exc
    data = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
    return parsed, data


def _has_pending_input(fd: int) -> bool:
    """True if the socket has something to read (an idle connection's server closed it)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - platforms without poll


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _libpq_params(dsn: str, connect_timeout: float, statement_timeout: Optional[float]) -> Tuple[Dict[str, str], str]:
    """libpq keywords from ``dsn`` plus our defaults, and a password-free label for messages."""
    import psycopg2
    from psycopg2.extensions import parse_dsn

    label = redact_url(dsn) if "://" in dsn else "<libpq connection string>"
    try:
        params: Dict[str, str] = parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        # libpq's message quotes the offending token, which may be (part of) the password.
        raise ConfigurationError(f"invalid PostgreSQL DSN {label!r}: check its syntax and percent-encoding") from None
    if "://" not in dsn:
        label = " ".join(f"{k}={'***' if k == 'password' else v}" for k, v in params.items())
    params.setdefault("connect_timeout", str(max(2, math.ceil(connect_timeout))))
    params.setdefault("application_name", "agents_persist")
    params.setdefault("client_encoding", "UTF8")
    for key, value in DEFAULT_KEEPALIVES.items():
        params.setdefault(key, value)
    if statement_timeout is not None:
        setting = f"-c statement_timeout={int(statement_timeout * 1000)}"
        params["options"] = f"{params['options']} {setting}" if params.get("options") else setting
    try:
        float(params["connect_timeout"])
    except ValueError:
        raise ConfigurationError("connect_timeout in the DSN must be a number of seconds") from None
    return params, label


class _StaleConnection(Exception):
    """An idle pooled connection turned out to be closed by the server; it is discarded."""


class _CallerPool:
    """Borrows connections from a caller's psycopg2 pool, one per operation, bounded and with a timeout.

    Connections go back to the caller's pool after each operation (closed there
    if broken); closing the checkpointer never closes the caller's pool.
    """

    def __init__(
        self,
        pool: "AbstractConnectionPool",
        max_size: int,
        timeout: float,
        is_broken: Callable[[Any, BaseException], bool],
    ) -> None:
        import psycopg2.pool

        self._pool = pool
        self._pool_error = psycopg2.pool.PoolError
        self._driver_error = psycopg2.Error
        self.max_size = max_size
        self.timeout = timeout
        self._is_broken = is_broken
        self._closed = False
        self._slots = threading.BoundedSemaphore(self.max_size)
        self._forked = False
        forking.register(self)

    def _after_fork_in_child(self) -> None:
        """Reset the bound; the caller's pool itself belongs to the parent and is not used any more."""
        self._slots = threading.BoundedSemaphore(self.max_size)
        self._forked = True

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """Borrow a connection from the caller's pool (autocommit) for the block."""
        if self._forked:
            raise ConfigurationError(
                "a PostgresCheckpointer built on a caller's pool cannot be used in a forked child: its connections "
                "belong to the parent. Build the checkpointer from a DSN (it reconnects after fork) or in the child."
            )
        if self._closed:
            raise CheckpointerClosedError("the PostgreSQL connection pool is closed")
        slots = self._slots
        if not slots.acquire(timeout=self.timeout):
            raise BackendUnavailableError(
                f"no free PostgreSQL connection within {self.timeout:g}s (max_connections={self.max_size})"
            )
        try:
            try:
                conn = self._pool.getconn()
            except self._pool_error as exc:
                raise BackendUnavailableError(f"the caller's PostgreSQL pool has no free connection: {exc}") from exc
            except self._driver_error as exc:
                raise BackendUnavailableError(f"cannot connect to PostgreSQL: {_first_line(exc)}") from exc
            was_autocommit = conn.autocommit
            broken = False
            try:
                if not was_autocommit:
                    conn.autocommit = True
                yield conn
            except BaseException as exc:
                broken = self._is_broken(conn, exc)
                raise
            finally:
                if not broken and not conn.closed and not was_autocommit:
                    conn.autocommit = False
                self._pool.putconn(conn, close=broken or bool(conn.closed))
        finally:
            if slots is self._slots:
                slots.release()

    def close(self) -> None:
        """Stop borrowing; the caller's pool stays open."""
        self._closed = True


class PostgresCheckpointer(Checkpointer):
    """Stores threads in PostgreSQL: every save is one atomic transaction in one round trip.

    Guarantees: a save checks the expected version and the stored message
    prefix, writes only the new messages (or replaces the log) and updates the
    head in one transaction, run by a server-side function so it costs one
    round trip. A load is one ``COPY ... TO STDOUT (FORMAT binary)`` statement,
    so head and log come from one committed version and the log travels as raw
    bytes. Concurrent first saves of a thread are safe (the head
    is created with ``INSERT ... ON CONFLICT``, then locked and re-checked).
    N threads use up to N pooled connections in parallel; no lock spans the
    process. A forked child opens its own connections and never touches the
    parent's. Connections closed by a server restart are noticed when
    borrowed and replaced, so the checkpointer recovers by itself.

    Layout, in ``schema`` (``public`` by default): ``<table_name>`` holds one
    head row per thread (version, message count, prefix digest, encoded head,
    ``updated_at`` and ``expires_at`` as epoch seconds); ``<table_name>_messages``
    holds the log, each row ``n`` encoded messages starting at position ``seq``,
    concatenated in a ``bytea`` (one row per save that appended, so an append
    inserts one row; every ``MERGE_ROWS`` appended rows are merged into one,
    tier by tier, so a long conversation keeps a few dozen rows);
    ``<table_name>_migrations`` records the applied schema versions.

    Limits:

    * The tables are created on first use or by :meth:`setup`, which needs the
      CREATE privilege on the schema (and on the database if the schema is
      missing); later runs only read the migrations table.
    * ``ttl`` expiry is evaluated against the clients' clocks (epoch seconds);
      expired rows stay until :meth:`purge_expired` runs.
    * With a caller's ``pool`` the statement timeout and keepalives are the
      caller's settings, and the checkpointer cannot be used in a forked child.
    * A log row holds at most about 1 MiB of encoded messages; a larger rewrite
      is split over several rows of one transaction.

    Args:
        dsn: ``postgresql://`` / ``postgres://`` URL or libpq ``key=value``
            string; every libpq parameter (``sslmode``, ``connect_timeout``,
            ``options``, ...) is passed through. Exactly one of ``dsn`` and
            ``pool`` is required.
        pool: An existing psycopg2 pool (``ThreadedConnectionPool``) to borrow
            connections from instead; it is never closed by this class.
        schema: Schema of the tables (created if missing).
        table_name: Base name of the tables, optionally ``schema.table``.
            Letters, digits, ``_`` and ``-``; always quoted in SQL.
        min_connections: Connections opened by :meth:`setup` up front.
        max_connections: Most connections open (and operations in flight) at once.
        timeout: Seconds to wait for a free pooled connection.
        connect_timeout: Seconds libpq waits for a connection (whole seconds,
            at least 2, as libpq counts them) unless the DSN sets it.
        statement_timeout: Seconds the server may spend on one statement
            (``None``: the server's default). If the server stops answering
            altogether (a frozen process, a dead host), the client cuts the
            connection 5 s later (35 s when None) and raises
            :class:`BackendUnavailableError`: no call hangs.
        ttl: Seconds a thread lives after its last save; None keeps threads.
        max_retries: Retries of ``update`` after a conflict.
    """

    url_schemes = ("postgresql", "postgres")

    def __init__(
        self,
        dsn: Optional[str] = None,
        *,
        pool: Optional["AbstractConnectionPool"] = None,
        schema: Optional[str] = None,
        table_name: str = DEFAULT_TABLE_NAME,
        min_connections: int = DEFAULT_MIN_CONNECTIONS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        statement_timeout: Optional[float] = DEFAULT_STATEMENT_TIMEOUT,
        ttl: Optional[float] = None,
        max_retries: int = 50,
    ) -> None:
        self.schema, self.table_name = _split_table_name(table_name, schema)
        if (dsn is None) == (pool is None):
            raise ConfigurationError("pass exactly one of dsn (a postgresql:// URL or libpq string) and pool")
        if type(max_connections) is not int or max_connections < 1:
            raise ConfigurationError(f"max_connections must be an int >= 1, not {max_connections!r}")
        if type(min_connections) is not int or not 0 <= min_connections <= max_connections:
            raise ConfigurationError(f"min_connections must be an int from 0 to max_connections, not {min_connections!r}")
        for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
        if statement_timeout is not None and (
            not isinstance(statement_timeout, (int, float)) or isinstance(statement_timeout, bool) or not statement_timeout > 0
        ):
            raise ConfigurationError(f"statement_timeout must be a positive number of seconds or None, not {statement_timeout!r}")
        try:
            import psycopg2
            import psycopg2.errors
            import psycopg2.extensions
            from psycopg2 import sql
        except ImportError as exc:
            raise ConfigurationError(
                "PostgresCheckpointer needs psycopg2: pip install agents_persist[postgres]"
            ) from exc
        self.statement_timeout = None if statement_timeout is None else float(statement_timeout)
        self._connect_kwargs: Dict[str, str] = {}
        if dsn is not None:
            if not isinstance(dsn, str):
                raise ConfigurationError(f"dsn must be a str, not {type(dsn).__name__}")
            self._connect_kwargs, self._dsn_label = _libpq_params(dsn, connect_timeout, self.statement_timeout)
        super().__init__(ttl=ttl, max_retries=max_retries)
        self._pg = psycopg2
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.timeout = float(timeout)
        self._lock_key = _advisory_key(self.schema, self.table_name)
        self._names = self._object_names(sql)
        self._queries: Optional[Dict[str, str]] = None
        self._ready = False
        self._setup_mutex = threading.Lock()
        self._missing_object_errors = (
            psycopg2.errors.UndefinedTable,
            psycopg2.errors.UndefinedFunction,
            psycopg2.errors.InvalidSchemaName,
        )
        self._pool: Union[ConnectionPool[Any], _CallerPool]
        if pool is not None:
            self._dsn_label = f"<{type(pool).__name__}>"
            self.connect_timeout = float(connect_timeout)
            self._pool = _CallerPool(pool, max_connections, self.timeout, self._is_broken)
        else:
            self.connect_timeout = float(self._connect_kwargs["connect_timeout"])
            self._pool = ConnectionPool(
                self._connect,
                self._close_connection,
                max_size=max_connections,
                timeout=self.timeout,
                is_broken=self._is_broken,
                name="PostgreSQL",
            )
        self._watchdog = DeadlineWatchdog(
            (self.statement_timeout or DEFAULT_STATEMENT_TIMEOUT) + UNRESPONSIVE_GRACE, "agents_persist-postgres-deadline"
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> "PostgresCheckpointer":
        """Build from ``postgresql://user:password@host:port/dbname?sslmode=require&...``.

        Query parameters ``schema``, ``table_name``, ``min_connections``,
        ``max_connections``, ``timeout``, ``statement_timeout``, ``ttl`` and
        ``max_retries`` configure the checkpointer (keyword ``options`` win);
        all others (``sslmode``, ``connect_timeout``, ``application_name``,
        ...) go to libpq unchanged.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() not in cls.url_schemes:
            raise ConfigurationError(f"not a PostgreSQL URL: {redact_url(url)!r}")
        libpq_params = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            convert = URL_OPTIONS.get(key)
            if convert is None:
                libpq_params.append((key, value))
                continue
            try:
                options.setdefault(key, convert(value))
            except ValueError:
                raise ConfigurationError(f"URL option {key}={value!r} is not a valid {convert.__name__}") from None
        dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(libpq_params), parts.fragment))
        return cls(dsn, **options)

    def _describe(self) -> str:
        return f"{self._dsn_label!r}, schema={self.schema!r}, table_name={self.table_name!r}"

    # ------------------------------------------------------------------ configuration

    def _object_names(self, sql: Any) -> Dict[str, Any]:
        """Quoted, schema-qualified identifiers of every object this checkpointer uses."""
        table = self.table_name

        def qualified(name: str) -> Any:
            return sql.Identifier(self.schema, name)

        return {
            "schema": sql.Identifier(self.schema),
            "threads": qualified(table),
            "messages": qualified(f"{table}_messages"),
            "migrations": qualified(f"{table}_migrations"),
            "save_fn": qualified(f"{table}_save"),
            "load_fn": qualified(f"{table}_load"),
            "delete_fn": qualified(f"{table}_delete"),
            "purge_fn": qualified(f"{table}_purge"),
            "threads_pkey": sql.Identifier(f"{table}_pkey"),
            "messages_pkey": sql.Identifier(f"{table}_messages_pkey"),
            "updated_idx": sql.Identifier(f"{table}_updated_idx"),
            "expires_idx": sql.Identifier(f"{table}_expires_idx"),
        }

    def _render(self, template: str, conn: "PgConnection") -> str:
        from psycopg2 import sql

        return str(sql.SQL(template).format(**self._names).as_string(conn))

    # ------------------------------------------------------------------ connections

    def _connect(self) -> "PgConnection":
        try:
            conn = self._pg.connect(**self._connect_kwargs)
        except self._pg.Error as exc:
            raise BackendUnavailableError(f"cannot connect to PostgreSQL {self._dsn_label}: {_first_line(exc)}") from exc
        conn.autocommit = True
        return conn

    @staticmethod
    def _close_connection(conn: "PgConnection") -> None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a dead connection may fail; it is gone either way
            pass

    def _is_broken(self, conn: "PgConnection", exc: BaseException) -> bool:
        """Whether a connection that saw ``exc`` must be discarded instead of reused."""
        if conn.closed or not isinstance(exc, Exception) or isinstance(exc, _StaleConnection):
            return True
        cause = exc.__cause__ if isinstance(exc, AgentsPersistError) else exc
        if isinstance(cause, (self._pg.OperationalError, self._pg.InterfaceError)):
            return True
        try:
            return bool(conn.info.transaction_status != self._pg.extensions.TRANSACTION_STATUS_IDLE)
        except Exception:  # noqa: BLE001
            return True

    def _is_stale(self, conn: "PgConnection") -> bool:
        if conn.closed:
            return True
        try:
            return _has_pending_input(conn.fileno())
        except (OSError, ValueError, self._pg.Error):
            return True

    @contextmanager
    def _connection(self, what: str) -> Iterator["PgConnection"]:
        """Borrow a live autocommit connection; psycopg2 errors become typed errors.

        Idle connections the server closed meanwhile (a restart) are noticed
        here without a round trip and replaced.
        """
        self._check_open()
        for _ in range(self.max_connections + 1):
            try:
                with self._pool.connection() as conn:
                    if self._is_stale(conn):
                        raise _StaleConnection()
                    with self._watchdog.guard(conn.fileno()) as guard:
                        try:
                            yield conn
                        except self._pg.Error as exc:
                            if guard.expired:
                                raise BackendUnavailableError(
                                    f"PostgreSQL {self._dsn_label} did not answer within {self._watchdog.seconds:g}s "
                                    f"while trying to {what}"
                                ) from exc
                            raise self._translate(exc, what) from exc
                    return
            except _StaleConnection:
                logger.info("discarding a PostgreSQL connection closed by the server (%s)", self._dsn_label)
        raise BackendUnavailableError(f"PostgreSQL {self._dsn_label} keeps closing new connections")

    def _translate(self, exc: BaseException, what: str) -> AgentsPersistError:
        """Map a psycopg2 error to the library's hierarchy (the message never holds a password)."""
        detail = f"PostgreSQL {self._dsn_label} failed to {what}: {_first_line(exc)}"
        if isinstance(exc, self._pg.extensions.QueryCanceledError):
            return BackendUnavailableError(f"{detail} (statement_timeout is {self.statement_timeout}s)")
        if isinstance(exc, self._missing_object_errors):
            self._ready = False  # dropped behind our back: the next call sets the schema up again
            return ConfigurationError(f"{detail}; the tables are missing: call setup()")
        if isinstance(exc, self._pg.ProgrammingError):
            return ConfigurationError(detail)
        return BackendUnavailableError(detail)

    @contextmanager
    def _cursor(self, what: str) -> Iterator["PgCursor"]:
        """A cursor on a ready connection (the schema is set up on first use)."""
        if not self._ready:
            self.setup()
        with self._connection(what) as conn:
            cursor = conn.cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    def _query(self, name: str) -> str:
        queries = self._queries
        assert queries is not None, "setup() renders the queries"
        return queries[name]

    # ------------------------------------------------------------------ schema

    def setup(self) -> None:
        """Create or migrate the tables now (otherwise done on first use); idempotent.

        Safe when many processes start at once: migrations run in one
        transaction holding ``pg_advisory_xact_lock`` for this schema and
        table, and each applied version is recorded in
        ``<table_name>_migrations``, so a second run only reads that table.

        Raises:
            ConfigurationError: The database has a newer schema version than
                this library knows, or the user lacks privileges.
            BackendUnavailableError: The server could not be reached in time.
        """
        with self._setup_mutex:
            if self._ready:
                return
            with self._connection("set up its tables") as conn:
                if self._queries is None:
                    self._queries = {name: self._render(template, conn) for name, template in _QUERIES.items()}
                with conn.cursor() as cursor:
                    applied = self._applied_version(cursor)
                    if applied < SCHEMA_VERSION:
                        applied = self._migrate(cursor)
            if applied > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{self.schema}.{self.table_name} has schema version {applied}, newer than this agents_persist "
                    f"knows ({SCHEMA_VERSION}); upgrade agents_persist"
                )
            self._prefill()
            self._ready = True

    def _applied_version(self, cursor: "PgCursor") -> int:
        """The newest recorded migration, 0 if the migrations table does not exist yet."""
        try:
            cursor.execute(self._query("applied"))
        except self._missing_object_errors:
            return 0
        row = cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _migrate(self, cursor: "PgCursor") -> int:
        """Apply missing migrations in one transaction under the advisory lock; return the version."""
        conn = cursor.connection
        cursor.execute("BEGIN")
        try:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
            cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
            if cursor.fetchone() is None:
                cursor.execute(self._render("CREATE SCHEMA {schema}", conn))
            cursor.execute(self._render(_MIGRATIONS_TABLE, conn))
            cursor.execute(self._render("SELECT coalesce(max(version), 0) FROM {migrations}", conn))
            applied = int(cursor.fetchone()[0])
            for version, description, statements in MIGRATIONS:
                if version <= applied:
                    continue
                logger.info("applying agents_persist migration %d to %s.%s", version, self.schema, self.table_name)
                for statement in statements:
                    cursor.execute(self._render(statement, conn))
                cursor.execute(
                    self._render("INSERT INTO {migrations} (version, description) VALUES (%s, %s)", conn),
                    (version, description),
                )
                applied = version
            cursor.execute("COMMIT")
        except BaseException:
            if not conn.closed:
                try:
                    cursor.execute("ROLLBACK")
                except self._pg.Error:
                    pass
            raise
        return applied

    def _prefill(self) -> None:
        """Open ``min_connections`` connections up front (own pool only)."""
        if not isinstance(self._pool, ConnectionPool) or self.min_connections <= 1:
            return
        with ExitStack() as stack:
            for _ in range(self.min_connections):
                stack.enter_context(self._connection("open its pool"))

    # ------------------------------------------------------------------ life cycle

    def _after_fork(self) -> None:
        # The pool forgets the parent's connections by itself, without closing them (closing
        # would send libpq's Terminate on the parent's socket); psycopg2 itself
        # skips closing a connection garbage-collected in another process.
        self._setup_mutex = threading.Lock()

    def _close(self) -> None:
        self._watchdog.stop()
        self._pool.close()

    # ------------------------------------------------------------------ primitives

    def _read(self, thread_id: str) -> Optional[StoredThread]:
        out = io.BytesIO()
        with self._cursor("load a thread") as cursor:
            # COPY takes no parameters: mogrify quotes them client-side, as execute() does.
            cursor.copy_expert(cursor.mogrify(self._query("load"), (thread_id, time.time())), out)
        parsed = _parse_load(out.getvalue(), thread_id)
        if parsed is None:
            return None
        head, messages = parsed
        return StoredThread(
            head.version, head.head, messages, head.message_count, head.digest, head.updated_at, head.expires_at
        )

    def _read_version(self, thread_id: str) -> int:
        with self._cursor("read a version") as cursor:
            cursor.execute(self._query("version"), (thread_id, time.time()))
            row = cursor.fetchone()
        return 0 if row is None else int(row[0])

    def _write(self, thread_id: str, write: PlannedWrite) -> int:
        seqs, counts, chunks = _pack_log(write.messages, write.first_seq)
        params = (
            thread_id,
            write.expected_version,
            write.append_from,
            write.base_digest,
            seqs,
            counts,
            chunks,
            write.message_count,
            write.digest,
            write.head,
            write.updated_at,
            write.expires_at,
            MERGE_ROWS,
            CHUNK_BYTES,
        )
        with self._cursor("save a thread") as cursor:
            cursor.execute(self._query("save"), params)
            status, version = cursor.fetchone()
        if status == 1:
            raise self._conflict(thread_id, write.expected_version, int(version))
        if status == 2:
            raise PrefixMismatch(thread_id)
        return int(version)

    def _delete(self, thread_id: str) -> bool:
        with self._cursor("delete a thread") as cursor:
            cursor.execute(self._query("delete"), (thread_id, time.time()))
            return bool(cursor.fetchone()[0])

    def _list_threads(
        self, prefix: Optional[str], limit: int, after: Optional[Tuple[float, str]], now: float
    ) -> List[ThreadInfo]:
        params = {
            "now": now,
            "limit": limit,
            "pattern": None if prefix is None else re.sub(r"([\\%_])", r"\\\1", prefix) + "%",
            "after_at": None if after is None else after[0],
            "after_id": None if after is None else after[1],
        }
        with self._cursor("list threads") as cursor:
            cursor.execute(self._query("list"), params)
            rows = cursor.fetchall()
        return [self._thread_info(*row) for row in rows]

    def _purge_expired(self, now: float) -> int:
        total = 0
        while True:
            with self._cursor("purge expired threads") as cursor:
                cursor.execute(self._query("purge"), (now, PURGE_BATCH))
                removed = int(cursor.fetchone()[0])
            total += removed
            if removed < PURGE_BATCH:
                return total
