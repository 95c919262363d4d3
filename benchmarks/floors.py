"""Raw clients: what a plain user of each driver writes to keep a conversation, the floors the library is held to.

A *whole-snapshot* client stores the snapshot as ONE value: one msgspec
encode and one ``SET`` / upsert / dict store / ``PutItem`` to save, one
``GET`` / ``SELECT`` / ``GetItem`` and one decode to load. It has no version
check, no validation beyond what msgspec does, no log: the cheapest thing
that could keep a conversation, and the floor of the many-threads, load and
growing-conversation workloads.

The *append* floors write only the new messages:

* Redis: one pipelined round trip of ``RPUSH`` of the new encoded messages
  and ``SET`` of the encoded head (:meth:`RawRedis.append`).
* PostgreSQL: the 1,000 encoded messages as one msgpack-framed ``bytea``,
  one ``SELECT``, split and decoded one by one (:meth:`RawPostgres.load_log`);
  and the whole snapshot read with binary ``COPY`` (:meth:`RawPostgres.load_copy`),
  the transfer the library's loads use.

Only msgspec and the drivers are used: no code of agents_persist's but its
public data model.
"""

from __future__ import annotations

import io
import sqlite3
import struct
import threading
from typing import Any, Dict, Iterable, List, Optional, Sequence

import msgspec

from agents_persist import AgentMessage, AgentStateSnapshot

__all__ = [
    "encode_snapshot",
    "decode_snapshot",
    "RawStore",
    "RawMemory",
    "RawSqlite",
    "RawRedis",
    "RawPostgres",
    "RawDynamoDb",
    "parse_binary_copy",
    "head_of",
    "fits",
]

_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(AgentStateSnapshot)
_message_decoder = msgspec.msgpack.Decoder(AgentMessage)
_blob_list_decoder = msgspec.msgpack.Decoder(List[bytes])


def encode_snapshot(state: AgentStateSnapshot) -> bytes:
    """The whole snapshot as one msgpack value (one msgspec call)."""
    return _encoder.encode(state)


def decode_snapshot(data: bytes) -> AgentStateSnapshot:
    """One msgspec call back to a snapshot."""
    return _snapshot_decoder.decode(data)


def head_of(state: AgentStateSnapshot) -> AgentStateSnapshot:
    """The snapshot without its messages: what an append-only layout keeps beside the log."""
    return AgentStateSnapshot(todos=state.todos, current_interrupt=state.current_interrupt, metadata=state.metadata)


class RawStore:
    """A whole-snapshot client; subclasses store bytes one way each. Safe to share between threads."""

    name = "raw"
    #: What one save does, for table labels.
    save_op = "store"
    load_op = "get"

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def remove(self, key: str) -> None:
        raise NotImplementedError

    def save(self, key: str, state: AgentStateSnapshot) -> None:
        """One encode, one write."""
        self.put(key, _encoder.encode(state))

    def load(self, key: str) -> AgentStateSnapshot:
        """One read, one decode."""
        return _snapshot_decoder.decode(self.get(key))

    def close(self) -> None:
        """Release connections."""


class RawMemory(RawStore):
    """A dict of encoded snapshots (what ``InMemoryCheckpointer`` would be without a log or checks)."""

    name = "memory"
    save_op = "dict store"
    load_op = "dict get"

    def __init__(self) -> None:
        self.data: Dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> None:
        self.data[key] = data

    def get(self, key: str) -> bytes:
        return self.data[key]

    def remove(self, key: str) -> None:
        self.data.pop(key, None)


class _PerThreadConnections:
    """One driver connection per calling thread (sqlite3 and psycopg2 connections are not for sharing)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: List[Any] = []
        self._mutex = threading.Lock()

    def connect(self) -> Any:
        raise NotImplementedError

    @property
    def conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
            with self._mutex:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._mutex:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


class RawSqlite(_PerThreadConnections, RawStore):
    """One table of (id, snapshot blob) in the library's database file, same pragmas, autocommit upserts."""

    name = "sqlite"
    save_op = "upsert"
    load_op = "SELECT"

    def __init__(self, path: str, synchronous: str = "FULL") -> None:
        super().__init__()
        self.path = path
        self.synchronous = synchronous
        self.conn.execute("CREATE TABLE IF NOT EXISTS raw_snapshots (id TEXT PRIMARY KEY, data BLOB NOT NULL)")

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        return conn

    def put(self, key: str, data: bytes) -> None:
        self.conn.execute(
            "INSERT INTO raw_snapshots VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data", (key, data)
        )

    def get(self, key: str) -> bytes:
        return bytes(self.conn.execute("SELECT data FROM raw_snapshots WHERE id = ?", (key,)).fetchone()[0])

    def remove(self, key: str) -> None:
        self.conn.execute("DELETE FROM raw_snapshots WHERE id = ?", (key,))


class RawRedis(RawStore):
    """``SET`` / ``GET`` of one key per thread on a shared redis-py client (its own pool)."""

    name = "redis"
    save_op = "SET"
    load_op = "GET"

    def __init__(self, client: Any, prefix: str = "bench-raw:") -> None:
        self.client = client
        self.prefix = prefix

    def put(self, key: str, data: bytes) -> None:
        self.client.set(self.prefix + key, data)

    def get(self, key: str) -> bytes:
        return bytes(self.client.get(self.prefix + key))

    def remove(self, key: str) -> None:
        self.client.delete(self.prefix + key, self._log(key), self._head(key))

    def _log(self, key: str) -> str:
        return f"{self.prefix}{{{key}}}:log"

    def _head(self, key: str) -> str:
        return f"{self.prefix}{{{key}}}:head"

    def create_log(self, key: str, messages: Sequence[AgentMessage], head: AgentStateSnapshot) -> None:
        """Store ``messages`` as a list of encoded messages and the head beside it (untimed set-up)."""
        self.client.delete(self._log(key))
        self.append(key, messages, head)

    def append(self, key: str, messages: Sequence[AgentMessage], head: AgentStateSnapshot) -> None:
        """The append floor: encode the new messages and the head, ``RPUSH`` + ``SET`` in one pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(self._log(key), *[_encoder.encode(message) for message in messages])
        pipe.set(self._head(key), _encoder.encode(head))
        pipe.execute()

    def close(self) -> None:
        self.client.close()


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_COPY_HEADER = struct.Struct(">11sII")
_COPY_FIELD = struct.Struct(">hi")


def parse_binary_copy(stream: bytes) -> bytes:
    """The one ``bytea`` field of the one row of a ``COPY ... TO STDOUT (FORMAT binary)`` stream."""
    signature, _, extension = _COPY_HEADER.unpack_from(stream)
    if signature != _COPY_SIGNATURE:
        raise ValueError("not a binary COPY stream")
    offset = _COPY_HEADER.size + extension
    fields, length = _COPY_FIELD.unpack_from(stream, offset)
    if fields != 1 or length < 0:
        raise ValueError("expected one row of one non-NULL field")
    start = offset + _COPY_FIELD.size
    return stream[start : start + length]


class RawPostgres(_PerThreadConnections, RawStore):
    """A table of (id, snapshot bytea) in its own schema; one connection per calling thread, one commit per call."""

    name = "postgres"
    save_op = "upsert"
    load_op = "SELECT"

    def __init__(self, url: str, schema: str) -> None:
        super().__init__()
        import psycopg2
        from psycopg2 import sql

        self._psycopg2 = psycopg2
        self.url = url
        table = sql.Identifier(schema, "raw_snapshots")
        conn = self.conn

        def render(template: str) -> str:
            return str(sql.SQL(template).format(table=table).as_string(conn))

        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            cursor.execute(render('CREATE TABLE IF NOT EXISTS {table} (id text COLLATE "C" PRIMARY KEY, data bytea NOT NULL)'))
        conn.commit()
        self.q_put = render("INSERT INTO {table} VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data")
        self.q_get = render("SELECT data FROM {table} WHERE id = %s")
        self.q_copy = render("COPY (SELECT data FROM {table} WHERE id = {{}}) TO STDOUT (FORMAT binary)")
        self.q_remove = render("DELETE FROM {table} WHERE id = %s")

    def connect(self) -> Any:
        return self._psycopg2.connect(self.url)

    def _run(self, query: str, args: Iterable[Any]) -> Any:
        conn = self.conn
        with conn.cursor() as cursor:
            cursor.execute(query, tuple(args))
            row = cursor.fetchone() if cursor.description else None
        conn.commit()
        return row

    def put(self, key: str, data: bytes) -> None:
        self._run(self.q_put, (key, data))

    def get(self, key: str) -> bytes:
        return bytes(self._run(self.q_get, (key,))[0])

    def remove(self, key: str) -> None:
        self._run(self.q_remove, (key,))

    def load_copy(self, key: str) -> AgentStateSnapshot:
        """The whole snapshot through ``COPY ... TO STDOUT (FORMAT binary)`` (bytea moves raw, no hex), one decode."""
        conn = self.conn
        buffer = io.BytesIO()
        with conn.cursor() as cursor:
            literal = cursor.mogrify("%s", (key,)).decode()
            cursor.copy_expert(self.q_copy.format(literal), buffer)
        conn.commit()
        return _snapshot_decoder.decode(parse_binary_copy(buffer.getvalue()))

    def put_log(self, key: str, messages: Sequence[AgentMessage]) -> None:
        """The messages as one ``bytea``: a msgpack array of the encoded messages (untimed set-up)."""
        self.put(key, _encoder.encode([_encoder.encode(message) for message in messages]))

    def load_log(self, key: str) -> List[AgentMessage]:
        """The one-bytea log floor: one ``SELECT``, split, one decode per message."""
        return [_message_decoder.decode(blob) for blob in _blob_list_decoder.decode(self.get(key))]


class RawDynamoDb(RawStore):
    """``PutItem`` / strongly consistent ``GetItem`` of one binary attribute in a table of its own."""

    name = "dynamodb"
    save_op = "PutItem"
    load_op = "GetItem"
    #: moto refuses items above about 405,000 bytes (AWS: 409,600).
    MAX_BYTES = 400_000

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table
        client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.get_waiter("table_exists").wait(TableName=table)

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.MAX_BYTES:
            raise ValueError(f"{len(data)} bytes: above the item size limit")
        self.client.put_item(TableName=self.table, Item={"id": {"S": key}, "d": {"B": data}})

    def get(self, key: str) -> bytes:
        item = self.client.get_item(TableName=self.table, Key={"id": {"S": key}}, ConsistentRead=True)["Item"]
        return bytes(item["d"]["B"])

    def remove(self, key: str) -> None:
        self.client.delete_item(TableName=self.table, Key={"id": {"S": key}})

    def close(self) -> None:
        self.client.delete_table(TableName=self.table)


def fits(raw: RawStore, state: AgentStateSnapshot) -> bool:
    """Whether ``raw`` can hold ``state`` as one value (DynamoDB's item limit)."""
    limit: Optional[int] = getattr(raw, "MAX_BYTES", None)
    return limit is None or len(_encoder.encode(state)) <= limit
