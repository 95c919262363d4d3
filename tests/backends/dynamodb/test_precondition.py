"""The DynamoDB store against every case of the shared precondition table, on the real moto server.

For each case of :data:`tests.contract.precondition_cases.CASES` a thread's
items are put with plain boto3 (a head with the case's version, message
count and digest, generation ``STORED_GENERATION`` and the applied key
``APPLIED_KEY``, and one chunk holding that many messages), then
``store.write`` is called with the case's planned write: ``APPLY`` must
commit version + 1 (1 over nothing) with the right log, generation (the
stored one, or the write's new one over nothing) and applied keys,
``DUPLICATE`` must return the version the key produced and write nothing,
``CONFLICT`` must raise ``ConflictError`` carrying the stored version,
``PREFIX_MISMATCH`` must raise :class:`~agents_persist.planning.PrefixMismatch`;
neither failure writes anything. Each case runs with a cold store (its first
guess is "no thread", corrected by the failed condition) and with a warm one
(the head cached by a read).

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

import msgspec
import pytest

from agents_persist import ConflictError, DynamoDbCheckpointer
from agents_persist.backends.dynamodb import DynamoDbStore
from agents_persist.planning import Decision, PrefixMismatch, Written, record_applied
from tests.backends.dynamodb.helpers import raw_items
from tests.contract.precondition_cases import (
    APPLIED_KEY,
    APPLIED_VERSION,
    CASES,
    LIVE,
    NEW_GENERATION,
    STORED_GENERATION,
    PreconditionCase,
)

Item = Dict[str, Dict[str, Any]]
NEW_MESSAGES = [b"new message 0", b"new message 1"]


def stored_messages(count: int) -> List[bytes]:
    return [f"stored message {i}".encode() for i in range(count)]


def put_thread(
    client: Any,
    table: str,
    thread_id: str,
    stored: Tuple[int, int, bytes],
    keep_until: Optional[int] = None,
    generation: Optional[int] = STORED_GENERATION,
) -> None:
    """A head item with ``stored`` (version, count, digest) and one sealed run of one chunk, in the documented layout.

    The head has generation ``generation`` (None: none, as written before generations existed) and,
    with one, has applied ``APPLIED_KEY`` (msgpack of ``[[key, version], ...]``).
    """
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
    if generation is not None:
        head["g"] = {"N": str(generation)}
        head["a"] = {"B": msgspec.msgpack.encode([[APPLIED_KEY, APPLIED_VERSION]])}
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
    version, count, _, generation, applied = case.scalars()

    if case.decision is Decision.APPLY:
        generation = generation if case.stored is not None else NEW_GENERATION
        assert store.write(thread, write) == Written(version + 1, generation)
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
        assert (found.generation, found.applied) == (generation, record_applied(applied, case.idempotency_key, version + 1))
        return
    if case.decision is Decision.DUPLICATE:
        assert store.write(thread, write) == Written(APPLIED_VERSION, STORED_GENERATION, duplicate=True)
    elif case.decision is Decision.CONFLICT:
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


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_keep_head_keeps_the_stored_head_blob(
    warm: bool, store: DynamoDbStore, dynamodb_client: Any, table: str, thread: str
) -> None:
    """``append()`` writes messages and scalars only: the stored todos/metadata blob stays, with its generation."""
    put_thread(dynamodb_client, table, thread, LIVE)
    if warm:
        store.read(thread)
    case = next(c for c in CASES if c.name == "append unchecked on the stored prefix")
    write = msgspec.structs.replace(case.write(NEW_MESSAGES), keep_head=True, idempotency_key="job-2")
    assert store.write(thread, write) == Written(4, STORED_GENERATION)
    found = store.read(thread)
    assert found is not None and found.head == b"stored head"
    assert found.messages == stored_messages(5) + NEW_MESSAGES
    assert found.applied == ((APPLIED_KEY, APPLIED_VERSION), ("job-2", 4))
    assert store.write(thread, write) == Written(4, STORED_GENERATION, duplicate=True)


def test_keep_head_over_nothing_stores_the_writes_head(store: DynamoDbStore, thread: str) -> None:
    case = next(c for c in CASES if c.name == "append from 0 onto nothing")
    write = msgspec.structs.replace(case.write(NEW_MESSAGES), keep_head=True)
    assert store.write(thread, write) == Written(1, NEW_GENERATION)
    found = store.read(thread)
    assert found is not None and found.head == write.head and found.messages == NEW_MESSAGES


def test_a_head_written_before_generations_existed_has_generation_0(
    store: DynamoDbStore, dynamodb_client: Any, table: str, thread: str
) -> None:
    put_thread(dynamodb_client, table, thread, LIVE, generation=None)
    head = store.read_head(thread)
    assert head is not None and (head.version, head.generation, head.applied) == (3, 0, ())
    case = next(c for c in CASES if c.name == "checked save of an older incarnation (ABA)")
    with pytest.raises(ConflictError):
        store.write(thread, case.write(NEW_MESSAGES))  # expects generation 12
    same = msgspec.structs.replace(case.write(NEW_MESSAGES), expected_generation=0)
    assert store.write(thread, same) == Written(4, 0)
