"""The table of a DynamoDB store: creating and checking it, and the reads that span items.

:func:`create_table` sets up a development table (on-demand billing, the
listing index, TTL enabled) and checks the key schema of an existing one;
:func:`query_partition` reads a thread's item collection, :func:`read_thread`
one committed version of it whole;
:func:`list_shard` and :func:`scan_heads` find head items for listing,
walking and purging, through the sparse global secondary index or by scanning.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

from ...errors import BackendUnavailableError, ConfigurationError, CorruptSnapshotError
from ...paging import Position
from ...planning import is_expired
from .client import DynamoDbClient, wait_before_unprocessed_retry
from .layout import (
    A_COUNT,
    A_EXPIRES,
    A_PAYLOAD,
    A_SHARD,
    A_UPDATED,
    A_VERSION,
    HEAD_SK,
    MAX_MESSAGES,
    MAX_VERSION,
    PK,
    SK,
    HeadState,
    Item,
    Run,
    chunk_prefix,
    chunk_sk,
    corrupt,
    head_from_item,
    item_key,
    read_int,
    read_str,
    read_time,
    run_of_sk,
    stale_chunks,
)

__all__ = [
    "create_table",
    "query_partition",
    "read_thread",
    "read_run",
    "list_shard",
    "scan_heads",
    "HeadRow",
    "Collection",
    "TABLE_READY_TIMEOUT",
    "READ_ATTEMPTS",
    "get_chunks",
    "join_runs",
    "BATCH_GET_MAX",
]

logger = logging.getLogger(__name__)

TABLE_READY_TIMEOUT = 120.0
#: Consistent reads of one load before giving up while the thread keeps being rewritten.
READ_ATTEMPTS = 12
#: Items a bounded head scan evaluates per request at least (heads and chunks alike).
SCAN_PAGE_ITEMS = 100


#: Heads not expired, and heads whose expiry is not a number (listed, flagged corrupt, never compared).
_LIVE = "(attribute_not_exists(#x) OR NOT attribute_type(#x, :num) OR #x > :now)"


class HeadRow(NamedTuple):
    """What listing and purging need of a head item (its projected attributes).

    ``corrupt``: an attribute is missing, of the wrong type or out of range;
    the row then holds zeros where it could not be read.
    """

    updated_at: float
    thread_id: str
    version: int
    message_count: int
    expires_at: Optional[float]
    corrupt: bool = False


def head_row(item: Item) -> HeadRow:
    """The row of a (projected) head item; a malformed one is flagged ``corrupt``, never raised."""
    thread_id = read_str(item, PK)
    try:
        return HeadRow(
            read_time(item, A_UPDATED),
            thread_id,
            read_int(item, A_VERSION, 1, MAX_VERSION),
            read_int(item, A_COUNT, 0, MAX_MESSAGES),
            read_time(item, A_EXPIRES) if A_EXPIRES in item else None,
        )
    except (KeyError, ValueError, TypeError, OverflowError):
        try:
            updated_at = read_time(item, A_UPDATED)
        except (KeyError, ValueError, TypeError, OverflowError):
            updated_at = 0.0
        return HeadRow(updated_at, thread_id, 0, 0, None, corrupt=True)


def create_table(client: DynamoDbClient, list_index: Optional[str], ttl_attribute: str) -> None:
    """Create the table if missing (on-demand, listing index, TTL on), then check its key schema."""
    from botocore.exceptions import ClientError

    table_name = client.table_name
    attributes = [{"AttributeName": PK, "AttributeType": "S"}, {"AttributeName": SK, "AttributeType": "S"}]
    request: Dict[str, Any] = {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
        "AttributeDefinitions": attributes,
    }
    if list_index is not None:
        attributes += [
            {"AttributeName": A_SHARD, "AttributeType": "N"},
            {"AttributeName": A_UPDATED, "AttributeType": "N"},
        ]
        request["GlobalSecondaryIndexes"] = [
            {
                "IndexName": list_index,
                "KeySchema": [
                    {"AttributeName": A_SHARD, "KeyType": "HASH"},
                    {"AttributeName": A_UPDATED, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": [A_VERSION, A_COUNT, A_EXPIRES]},
            }
        ]
    try:
        client.call("create_table", expect=("ResourceInUseException",), **request)
        logger.info("created DynamoDB table %r", table_name)
    except ClientError:
        pass  # it exists already
    table = _wait_until_active(client)
    keys = {k["AttributeName"]: k["KeyType"] for k in table.get("KeySchema", [])}
    if keys != {PK: "HASH", SK: "RANGE"}:
        raise ConfigurationError(
            f"DynamoDB table {table_name!r} has key schema {keys}; this backend needs {PK!r} (HASH, S) and {SK!r} (RANGE, S)"
        )
    if list_index is not None and list_index not in {i["IndexName"] for i in table.get("GlobalSecondaryIndexes") or []}:
        raise ConfigurationError(
            f"DynamoDB table {table_name!r} has no index {list_index!r} for list_threads; "
            "add it (see the docs) or pass list_index=None to scan the table instead"
        )
    _enable_ttl(client, ttl_attribute)


def _wait_until_active(client: DynamoDbClient) -> Dict[str, Any]:
    """The table's description once it and its indexes are ACTIVE."""
    deadline = time.monotonic() + TABLE_READY_TIMEOUT
    while True:
        table: Dict[str, Any] = client.call("describe_table", TableName=client.table_name)["Table"]
        indexes = table.get("GlobalSecondaryIndexes") or []
        if table.get("TableStatus") == "ACTIVE" and all(i.get("IndexStatus", "ACTIVE") == "ACTIVE" for i in indexes):
            return table
        if time.monotonic() > deadline:
            raise BackendUnavailableError(f"DynamoDB table {client.table_name!r} did not become ACTIVE in time")
        time.sleep(0.2)


def _enable_ttl(client: DynamoDbClient, ttl_attribute: str) -> None:
    """Turn on DynamoDB's TTL on ``ttl_attribute`` unless the table already expires items by some attribute."""
    ttl = client.call("describe_time_to_live", TableName=client.table_name).get("TimeToLiveDescription", {})
    status, attribute = ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")
    if status in ("ENABLED", "ENABLING"):
        if attribute != ttl_attribute:
            logger.warning(
                "DynamoDB table %r expires items by %r, not by ttl_attribute=%r", client.table_name, attribute, ttl_attribute
            )
        return
    client.call(
        "update_time_to_live",
        TableName=client.table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
    )


def _pages(
    client: DynamoDbClient, operation: str, request: Dict[str, Any], expect: Tuple[str, ...] = ()
) -> Iterator[Dict[str, Any]]:
    """Yield the pages of a ``query`` or ``scan``, following ``LastEvaluatedKey``."""
    while True:
        page = client.call(operation, expect=expect, **request)
        yield page
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        request["ExclusiveStartKey"] = last


def query_partition(client: DynamoDbClient, thread_id: str, **extra: Any) -> List[Item]:
    """Every item of the thread's partition, strongly consistent, following pages.

    ``extra`` adds to the request; dict values (attribute names and values) are merged.
    """
    request: Dict[str, Any] = {
        "TableName": client.table_name,
        "KeyConditionExpression": "#pk = :pk",
        "ExpressionAttributeNames": {"#pk": PK},
        "ExpressionAttributeValues": {":pk": {"S": thread_id}},
        "ConsistentRead": True,
    }
    for name, value in extra.items():
        if isinstance(value, dict) and isinstance(request.get(name), dict):
            request[name] = {**request[name], **value}
        else:
            request[name] = value
    return [item for page in _pages(client, "query", request) for item in page.get("Items", [])]


class Collection(NamedTuple):
    """One committed version of a thread as a load read it."""

    head: Optional[HeadState]  # None: no head item
    head_blob: Optional[bytes]  # None: no live thread (missing or expired)
    stream: bytes  # the message stream of the runs the head lists
    orphans: List[str]  # chunk items a crashed writer left behind


def chunk_payloads(items: List[Item], thread_id: str) -> Dict[str, bytes]:
    """The payloads of the chunk items among ``items``, by sort key; items of no run we could write are skipped.

    Raises:
        CorruptSnapshotError: A chunk item's payload is missing or not binary.
    """
    chunks: Dict[str, bytes] = {}
    for item in items:
        sk = item[SK].get("S", "")
        if run_of_sk(sk) is None:
            continue
        payload = item.get(A_PAYLOAD, {}).get("B")
        chunks[sk] = payload if isinstance(payload, bytes) else _BAD_PAYLOAD
    return chunks


#: Stands for a chunk item whose payload is missing or of the wrong type (raised once a head lists it).
_BAD_PAYLOAD = b""


def join_runs(chunks: Dict[str, bytes], runs: Tuple[Run, ...], thread_id: str) -> Optional[bytes]:
    """The stream of ``runs`` from ``chunks``; None if a chunk is missing.

    Every chunk's key is looked up one by one, so a run claiming more chunks
    than were read costs no more than the chunks that exist.

    Raises:
        CorruptSnapshotError: A listed chunk's payload is missing or not binary.
    """
    parts: List[bytes] = []
    for run in runs:
        for seq in range(run.chunks):
            part = chunks.get(chunk_sk(run.run_id, seq))
            if part is None:
                return None
            if part is _BAD_PAYLOAD:
                raise corrupt(thread_id, f"chunk item {chunk_sk(run.run_id, seq)!r}")
            parts.append(part)
    return b"".join(parts)


def read_thread(client: DynamoDbClient, thread_id: str) -> Collection:
    """The thread's items by one paginated consistent ``Query``, read again while a rewrite removes their chunks.

    Raises:
        CorruptSnapshotError: The same head lists chunks that are missing twice, or an item is malformed.
        BackendUnavailableError: Each of :data:`READ_ATTEMPTS` reads met a concurrent rewrite.
    """
    seen_token: Optional[str] = None
    for _ in range(READ_ATTEMPTS):
        items = query_partition(client, thread_id)
        head_item = next((item for item in items if item[SK].get("S") == HEAD_SK), None)
        chunks = chunk_payloads(items, thread_id)
        now = time.time()
        head = head_from_item(head_item, thread_id) if head_item is not None else None
        orphans = stale_chunks(chunks, head, now)
        if head is None or is_expired(head.expires_at, now):
            return Collection(head, None, b"", orphans)
        stream = join_runs(chunks, head.runs, thread_id)
        head_blob = head.inline_head
        if head_blob is None and head.head_run is not None:
            head_blob = join_runs(chunks, (head.head_run,), thread_id)
        elif head_blob is None:
            raise CorruptSnapshotError(f"thread {thread_id!r}: the head item holds no head", thread_id=thread_id)
        if stream is None or head_blob is None:
            # Read committed, not snapshot: a concurrent save may have replaced the head and
            # removed its old chunks between our pages. The same head twice means real damage.
            if head.token == seen_token:
                raise CorruptSnapshotError(
                    f"thread {thread_id!r}: a chunk item listed by version {head.version} is missing",
                    thread_id=thread_id,
                )
            seen_token = head.token
            continue
        return Collection(head, head_blob, stream, orphans)
    raise BackendUnavailableError(
        f"thread {thread_id!r} was rewritten during each of {READ_ATTEMPTS} consistent reads; try again",
        thread_id=thread_id,
    )


def read_run(client: DynamoDbClient, thread_id: str, run: Run) -> Optional[bytes]:
    """The stream of one run; None if its chunks are gone (a later head no longer lists it)."""
    items = query_partition(
        client,
        thread_id,
        KeyConditionExpression="#pk = :pk AND begins_with(#sk, :run)",
        ExpressionAttributeNames={"#sk": SK},
        ExpressionAttributeValues={":run": {"S": chunk_prefix(run.run_id)}},
    )
    return join_runs(chunk_payloads(items, thread_id), (run,), thread_id)


#: BatchGetItem takes at most 100 keys; a partial read needing more chunks reads the thread whole.
BATCH_GET_MAX = 100
BATCH_GET_ROUNDS = 10


def get_chunks(client: DynamoDbClient, thread_id: str, sort_keys: List[str]) -> Dict[str, bytes]:
    """The payloads of the chunk items ``sort_keys`` that exist, by one consistent ``BatchGetItem`` (and its leftovers).

    Raises:
        BackendUnavailableError: DynamoDB kept returning keys unprocessed (throttled).
    """
    table = client.table_name
    request = {table: {"Keys": [item_key(thread_id, sk) for sk in sort_keys], "ConsistentRead": True}}
    items: List[Item] = []
    for round_ in range(BATCH_GET_ROUNDS):
        page = client.call("batch_get_item", RequestItems=request)
        items += page.get("Responses", {}).get(table, [])
        request = page.get("UnprocessedKeys") or {}
        if not request.get(table, {}).get("Keys"):
            return chunk_payloads(items, thread_id)
        wait_before_unprocessed_retry(round_)
    raise BackendUnavailableError(
        f"DynamoDB kept chunk reads of thread {thread_id!r} unprocessed (throttled)", thread_id=thread_id
    )


def list_shard(
    client: DynamoDbClient,
    index: str,
    shard: int,
    prefix: Optional[str],
    limit: int,
    after: Optional[Position],
    now: float,
) -> List[HeadRow]:
    """Newest live heads of one index shard strictly after ``after``, at least ``limit`` of them when there are that many."""
    from botocore.exceptions import ClientError

    names = {"#ls": A_SHARD, "#x": A_EXPIRES}
    values: Dict[str, Dict[str, str]] = {":ls": {"N": str(shard)}, ":now": {"N": repr(now)}}
    key_condition = "#ls = :ls"
    if after is not None:
        key_condition += " AND #u <= :after"
        names["#u"] = A_UPDATED
        values[":after"] = {"N": repr(after[0])}
    filters = _LIVE
    values[":num"] = {"S": "N"}
    if prefix is not None:
        filters += " AND begins_with(#pk, :prefix)"
        names["#pk"] = PK
        values[":prefix"] = {"S": prefix}
    request: Dict[str, Any] = {
        "TableName": client.table_name,
        "IndexName": index,
        "KeyConditionExpression": key_condition,
        "FilterExpression": filters,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": False,
        "Limit": min(max(limit, 25), 1000),
    }
    rows: List[HeadRow] = []
    try:
        for page in _pages(client, "query", request, expect=("ValidationException",)):
            rows += [row for row in map(head_row, page.get("Items", [])) if after is None or (row[0], row[1]) < after]
            last = page.get("LastEvaluatedKey")
            if last and len(rows) >= limit:
                rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
                if float(last.get(A_UPDATED, {}).get("N", "inf")) < rows[limit - 1][0]:
                    return rows  # everything further down the index is older than what we keep
    except ClientError as exc:
        raise ConfigurationError(
            f"cannot query index {index!r} of DynamoDB table {client.table_name!r} "
            f"({exc.response.get('Error', {}).get('Message')}); create it (see the docs) or pass "
            "list_index=None to scan the table"
        ) from exc
    return rows


def scan_heads(
    client: DynamoDbClient,
    prefix: Optional[str],
    now: float,
    expired: bool,
    after: Optional[str] = None,
    limit: Optional[int] = None,
) -> List[HeadRow]:
    """Head items in the table's ``Scan`` order: live ones, or with ``expired`` the expired ones.

    The whole table (O(table)) unless ``limit`` stops it at that many rows;
    ``after`` starts right after that thread's head item in the ``Scan``
    order (by partition-key hash, stable while items come and go).
    """
    names = {"#pk": PK, "#sk": SK, "#v": A_VERSION, "#n": A_COUNT, "#u": A_UPDATED, "#x": A_EXPIRES}
    values: Dict[str, Dict[str, str]] = {":head": {"S": HEAD_SK}, ":now": {"N": repr(now)}, ":num": {"S": "N"}}
    filters = "#sk = :head AND " + ("(attribute_type(#x, :num) AND #x <= :now)" if expired else _LIVE)
    if prefix is not None:
        filters += " AND begins_with(#pk, :prefix)"
        values[":prefix"] = {"S": prefix}
    request: Dict[str, Any] = {
        "TableName": client.table_name,
        "FilterExpression": filters,
        "ProjectionExpression": "#pk, #v, #n, #u, #x",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
        "ConsistentRead": True,
    }
    if after is not None:
        request["ExclusiveStartKey"] = item_key(after, HEAD_SK)
    if limit is not None:
        request["Limit"] = min(max(limit, SCAN_PAGE_ITEMS), 1000)  # items evaluated per page, chunks included
    rows: List[HeadRow] = []
    for page in _pages(client, "scan", request):
        rows += map(head_row, page.get("Items", []))
        if limit is not None and len(rows) >= limit:
            return rows[:limit]  # the next walk resumes after the last of these, not after the page
    return rows
