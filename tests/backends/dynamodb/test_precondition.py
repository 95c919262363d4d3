"""The DynamoDB store against every case of the shared precondition table, on the real moto server.

For each case of :data:`tests.contract.precondition_cases.CASES` a thread's
items are put with plain boto3 (a head with the case's version, message
count and digest, and one chunk holding that many messages), then
``store.write`` is called with the case's planned write: ``APPLY`` must
commit version + 1 (1 over nothing) with the right log, ``CONFLICT`` must
raise ``ConflictError`` carrying the stored version, ``PREFIX_MISMATCH``
must raise :class:`~agents_persist.planning.PrefixMismatch`; neither failure
writes anything. Each case runs with a cold store (its first guess is
"no thread", corrected by the failed condition) and with a warm one (the
head cached by a read).

The store may also answer ``PrefixMismatch`` to a valid append when its
layout needs the log rewritten packed (too many runs, or chunk TTLs that no
longer cover the thread); the checkpointer then plans a rewrite. None of the
heads below asks for that; ``test_append_the_layout_must_repack_asks_for_a_rewrite``
covers it.
"""

from __future__ import annotations

import struct
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from agents_persist import ConflictError, DynamoDbCheckpointer
from agents_persist.backends.dynamodb import DynamoDbStore
from agents_persist.planning import Decision, PrefixMismatch
from tests.backends.dynamodb.helpers import raw_items
from tests.contract.precondition_cases import CASES, LIVE, PreconditionCase

Item = Dict[str, Dict[str, Any]]
NEW_MESSAGES = [b"new message 0", b"new message 1"]


def stored_messages(count: int) -> List[bytes]:
    return [f"stored message {i}".encode() for i in range(count)]


def put_thread(client: Any, table: str, thread_id: str, stored: Tuple[int, int, bytes], keep_until: Optional[int] = None) -> None:
    """A head item with ``stored`` (version, count, digest) and one sealed run of one chunk, in the documented layout."""
    version, count, digest = stored
    run_id = f"{int(time.time()):08x}0badf00d"
    head: Item = {
        "thread_id": {"S": thread_id},
        "sk": {"S": "H"},
        "v": {"N": str(version)},
        "n": {"N": str(count)},
        "d": {"B": digest},
        "u": {"N": repr(time.time())},
        "w": {"S": "token-of-the-test"},
        "h": {"B": b"stored head"},
    }
    if keep_until is not None:
        head["k"] = {"N": str(keep_until)}
    if count:
        stream = b"".join(struct.pack(">I", len(blob)) + blob for blob in stored_messages(count))
        chunk = {"thread_id": {"S": thread_id}, "sk": {"S": f"c{run_id}:000000"}, "p": {"B": stream}}
        client.put_item(TableName=table, Item=chunk)
        head["r"] = {"S": f"{run_id}:1"}
    client.put_item(TableName=table, Item=head)


def sorted_items(client: Any, table: str, thread_id: str) -> List[Item]:
    return sorted(raw_items(client, table, thread_id), key=lambda item: item["sk"]["S"])


@pytest.fixture
def store(dynamodb_checkpointer: DynamoDbCheckpointer) -> DynamoDbStore:
    return dynamodb_checkpointer.store


@pytest.fixture
def thread(dynamodb_client: Any, table: str, prefix: str) -> Iterator[str]:
    """A thread ID of this test; every item under it is deleted afterwards."""
    thread_id = prefix + "precondition"
    try:
        yield thread_id
    finally:
        for item in raw_items(dynamodb_client, table, thread_id):
            dynamodb_client.delete_item(TableName=table, Key={"thread_id": item["thread_id"], "sk": item["sk"]})


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_store_write_follows_the_precondition_table(
    case: PreconditionCase, warm: bool, store: DynamoDbStore, dynamodb_client: Any, table: str, thread: str
) -> None:
    if case.stored is not None:
        put_thread(dynamodb_client, table, thread, case.stored)
    if warm:
        store.read(thread)  # caches the head (or its absence)
    before = sorted_items(dynamodb_client, table, thread)
    write = case.write(NEW_MESSAGES)
    version, count, _ = case.scalars()

    if case.decision is Decision.APPLY:
        assert store.write(thread, write) == version + 1
        found = store.read(thread)
        assert found is not None
        kept = stored_messages(count)[: case.append_from] if case.append_from is not None else []
        assert found.messages == kept + NEW_MESSAGES
        assert (found.version, found.message_count, found.digest, found.head) == (
            version + 1,
            write.message_count,
            write.digest,
            write.head,
        )
        return
    if case.decision is Decision.CONFLICT:
        with pytest.raises(ConflictError) as raised:
            store.write(thread, write)
        assert (raised.value.actual_version, raised.value.expected_version) == (version, case.expected_version)
    else:
        with pytest.raises(PrefixMismatch):
            store.write(thread, write)
    assert sorted_items(dynamodb_client, table, thread) == before, "a refused write changed the stored items"


def test_append_the_layout_must_repack_asks_for_a_rewrite(
    store: DynamoDbStore, dynamodb_client: Any, table: str, thread: str
) -> None:
    """A valid append onto chunks with TTLs, by a write without TTL, must rewrite the log (else DynamoDB drops chunks)."""
    put_thread(dynamodb_client, table, thread, LIVE, keep_until=int(time.time()) + 3600)
    case = next(c for c in CASES if c.name == "append on the stored prefix")
    before = sorted_items(dynamodb_client, table, thread)
    with pytest.raises(PrefixMismatch):
        store.write(thread, case.write(NEW_MESSAGES))
    assert sorted_items(dynamodb_client, table, thread) == before
