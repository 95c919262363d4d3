"""Debris: what a store holds for the test's threads that no committed head reaches.

Read with the backend's own raw client (the checkpointer's, never through
its load path), under the test's thread-ID prefix only:

* Redis: ``SCAN`` every node for keys of threads under the prefix; a key is
  reachable when it is the head or the log of a thread whose head exists.
  Index entries (sorted-set members) under the prefix without a head are
  counted too.
* PostgreSQL, SQLite: log rows of the prefix's threads that lie beyond the
  head's message count (``seq + n > message_count``) or belong to no head.
* DynamoDB: items of the prefix's threads that are neither the head nor a
  chunk of a run the head lists.

Anything unreachable that carries an expiry (Redis ``PTTL``, the DynamoDB
TTL attribute) is counted apart: it goes away by itself.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Tuple

from agents_persist import Checkpointer

__all__ = ["Debris", "count_debris"]


@dataclass
class Debris:
    """Unreachable keys/rows/items: those that never expire (named) and how many will."""

    without_expiry: List[str] = field(default_factory=list)
    with_expiry: int = 0

    def __str__(self) -> str:
        sample = ", ".join(self.without_expiry[:5]) + (", ..." if len(self.without_expiry) > 5 else "")
        return f"{len(self.without_expiry)} without expiry{f' ({sample})' if sample else ''}, {self.with_expiry} with expiry"


def count_debris(backend: str, cp: Checkpointer, prefix: str) -> Debris:
    """The debris under ``prefix`` of a store of ``backend`` (a ContractSpec's ``backend``), read through ``cp``'s client."""
    counter = _COUNTERS.get(backend)
    if counter is None:
        raise AssertionError(f"no debris counter for backend {backend!r}: add one to tests/faults/debris.py")
    return counter(cp, prefix)


# ---------------------------------------------------------------------------------------------- Redis


def _redis(cp: Checkpointer, prefix: str) -> Debris:
    from agents_persist.backends.redis.layout import escape_tag, index_keys

    store: Any = cp.store
    client = store.connection.client()
    base = f"{store.key_prefix}{{"
    pattern = f"{base}{escape_tag(prefix)}*"
    if store.cluster:
        keys = list(client.scan_iter(match=pattern, count=1000, target_nodes=client.PRIMARIES))
    else:
        keys = list(client.scan_iter(match=pattern, count=1000))
    names = sorted({key.decode() if isinstance(key, bytes) else key for key in keys})
    heads = {name[len(base) :].rpartition("}")[0] for name in names if name.endswith("}:head")}
    debris = Debris()
    for name in names:
        tag, _, suffix = name[len(base) :].rpartition("}")
        if tag in heads and suffix in (":head", ":log", ":pos"):  # :pos, the log's position index (partial reads)
            continue
        if int(client.pttl(name)) >= 0:
            debris.with_expiry += 1
        else:
            debris.without_expiry.append(name)
    for index in index_keys(store.key_prefix):
        for member, _ in client.zscan_iter(index, match=f"{prefix}*", count=1000):
            thread_id = member.decode() if isinstance(member, bytes) else member
            if escape_tag(thread_id) not in heads:
                debris.without_expiry.append(f"{index} member {thread_id!r}")
    return debris


# ---------------------------------------------------------------------------------------------- SQL


def _rows_beyond_heads(rows: List[Tuple[str, int, int, Any]]) -> Debris:
    """Debris among ``(thread_id, seq, n, message_count or None)`` log rows."""
    debris = Debris()
    for thread_id, seq, n, count in rows:
        if count is None or seq + n > count:
            debris.without_expiry.append(f"log row ({thread_id!r}, seq={seq}, n={n}) beyond head count {count}")
    return debris


def _postgres(cp: Checkpointer, prefix: str) -> Debris:
    from psycopg2 import sql

    store: Any = cp.store
    threads = sql.Identifier(store.schema, store.table_name)
    messages = sql.Identifier(store.schema, f"{store.table_name}_log")  # the storage table (_messages is the SQL view)
    query = sql.SQL(
        "SELECT m.thread_id, m.seq, m.n, t.message_count FROM {messages} m "
        "LEFT JOIN {threads} t ON t.thread_id = m.thread_id WHERE starts_with(m.thread_id, %s) ORDER BY 1, 2"
    ).format(messages=messages, threads=threads)
    with store._connections.connection("count debris") as conn, conn.cursor() as cursor:
        cursor.execute(query, (prefix,))
        return _rows_beyond_heads(cursor.fetchall())


def _sqlite(cp: Checkpointer, prefix: str) -> Debris:
    conn = sqlite3.connect(f"file:{cp.store.path}?mode=ro", uri=True, timeout=30)  # type: ignore[attr-defined]
    try:
        rows = conn.execute(
            "SELECT m.thread_id, m.seq, m.n, t.message_count FROM agents_persist_messages m "
            "LEFT JOIN agents_persist_threads t ON t.thread_id = m.thread_id "
            "WHERE substr(m.thread_id, 1, length(?1)) = ?1 ORDER BY 1, 2",
            (prefix,),
        ).fetchall()
    finally:
        conn.close()
    return _rows_beyond_heads(rows)


# ---------------------------------------------------------------------------------------------- DynamoDB


def _dynamodb(cp: Checkpointer, prefix: str) -> Debris:
    from tests.backends.dynamodb.helpers import referenced_sort_keys

    store: Any = cp.store
    client = store.client.get()
    request: Dict[str, Any] = {
        "TableName": store.table_name,
        "FilterExpression": "begins_with(thread_id, :p)",
        "ExpressionAttributeValues": {":p": {"S": prefix}},
        "ConsistentRead": True,
    }
    by_thread: Dict[str, List[Dict[str, Any]]] = {}
    while True:
        page = client.scan(**request)
        for item in page["Items"]:
            by_thread.setdefault(item["thread_id"]["S"], []).append(item)
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    debris = Debris()
    for thread_id, items in sorted(by_thread.items()):
        has_head = any(item["sk"]["S"] == "H" for item in items)
        reachable = set(referenced_sort_keys(items)) if has_head else set()
        for item in items:
            if item["sk"]["S"] in reachable:
                continue
            if store.ttl_attribute in item:
                debris.with_expiry += 1
            else:
                debris.without_expiry.append(f"item ({thread_id!r}, {item['sk']['S']!r})")
    return debris


_COUNTERS: Dict[str, Callable[[Checkpointer, str], Debris]] = {
    "redis": _redis,
    "postgres": _postgres,
    "sqlite": _sqlite,
    "dynamodb": _dynamodb,
}
