"""Item layout and sizes: packing, the item limit, the large-write path, the open run and its compaction.

Everything runs against ``moto_server`` over HTTP (see ``tests/fixtures/dynamodb.py``) with real
boto3 calls, and inspects the stored items with a raw boto3 client."""

from __future__ import annotations

import random
from typing import Any

import pytest

from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    DynamoDbCheckpointer,
)
from agents_persist.backends.dynamodb import writes
from agents_persist.codec import encode_messages
from tests.backends.dynamodb.helpers import (
    RequestLog,
    assert_items_within_limits,
    assert_no_garbage,
    padded,
    raw_items,
)


def test_5000_message_thread_over_2mb_round_trips_in_few_items_within_limit(
    dynamodb_checkpointer: DynamoDbCheckpointer, dynamodb_client: Any, table: str, prefix: str
) -> None:
    tid = prefix + "big"
    messages = [AgentMessage.user(padded(f"message {i}", 430)) for i in range(5000)]
    assert sum(len(blob) for blob in encode_messages(messages)) > 2_000_000
    dynamodb_checkpointer.save(tid, AgentStateSnapshot(messages=messages))
    loaded = dynamodb_checkpointer.load(tid)
    assert loaded is not None and loaded.messages == messages
    items = assert_items_within_limits(dynamodb_client, table, tid)
    assert len(items) <= 1 + 8, "5,000 small messages must be packed into a few chunk items"
    loaded.messages += [AgentMessage.assistant("two"), AgentMessage.user("more")]
    dynamodb_checkpointer.save(tid, loaded)
    again = dynamodb_checkpointer.load(tid)
    assert again is not None and again.messages == loaded.messages and again.version == 2
    assert_items_within_limits(dynamodb_client, table, tid)
    assert_no_garbage(dynamodb_client, table, tid)


def test_one_megabyte_message_spans_several_items(
    dynamodb_checkpointer: DynamoDbCheckpointer, dynamodb_client: Any, table: str, prefix: str
) -> None:
    tid = prefix + "mb"
    big = AgentMessage.tool("".join(random.choice("abcdefghij") for _ in range(1_048_576)), tool_call_id="c1")
    state = AgentStateSnapshot(messages=[AgentMessage.user("before"), big, AgentMessage.user("after")])
    dynamodb_checkpointer.save(tid, state)
    loaded = dynamodb_checkpointer.load(tid)
    assert loaded is not None and loaded.messages == state.messages
    items = assert_items_within_limits(dynamodb_client, table, tid)
    assert sum(1 for item in items if item["sk"]["S"] != "H") >= 3


def test_save_bigger_than_one_transaction_writes_chunks_then_commits_the_head(
    dynamodb_checkpointer: DynamoDbCheckpointer, dynamodb_client: Any, table: str, prefix: str
) -> None:
    tid = prefix + "huge"
    messages = [AgentMessage.user(padded(f"{i}", 400_000)) for i in range(12)]  # ~4.8 MB: over 4 MB
    log = RequestLog(dynamodb_checkpointer)
    dynamodb_checkpointer.save(tid, AgentStateSnapshot(messages=messages))
    calls = log.take()
    assert "TransactWriteItems" not in calls
    assert calls[-1] == "PutItem" and "BatchWriteItem" in calls  # chunks first, the head last
    loaded = dynamodb_checkpointer.load(tid)
    assert loaded is not None and loaded.messages == messages
    assert_items_within_limits(dynamodb_client, table, tid)
    # A rewrite to something small removes every old chunk item after it commits.
    dynamodb_checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("small now")]), force=True)
    assert_no_garbage(dynamodb_client, table, tid)
    assert len(raw_items(dynamodb_client, table, tid)) == 2


def test_large_head_moves_into_chunk_items_and_old_ones_are_removed(
    dynamodb_checkpointer: DynamoDbCheckpointer, dynamodb_client: Any, table: str, prefix: str
) -> None:
    tid = prefix + "head"
    state = AgentStateSnapshot(messages=[AgentMessage.user("hi")], metadata={"doc": "x" * 600_000})
    dynamodb_checkpointer.save(tid, state)
    loaded = dynamodb_checkpointer.load(tid)
    assert loaded is not None and loaded.metadata == {"doc": "x" * 600_000}
    head = next(i for i in assert_items_within_limits(dynamodb_client, table, tid) if i["sk"]["S"] == "H")
    assert "hr" in head and "h" not in head
    loaded.metadata = {"doc": "small"}
    dynamodb_checkpointer.save(tid, loaded)
    assert_no_garbage(dynamodb_client, table, tid)
    again = dynamodb_checkpointer.load(tid)
    assert again is not None and again.metadata == {"doc": "small"} and again.messages == state.messages


def test_append_is_one_transact_write_items_and_load_one_query(dynamodb_checkpointer: DynamoDbCheckpointer, prefix: str) -> None:
    tid = prefix + "requests"
    log = RequestLog(dynamodb_checkpointer)
    dynamodb_checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user(str(i)) for i in range(1000)]))
    assert log.take() == ["TransactWriteItems"], "a new thread is saved in one request"
    state = dynamodb_checkpointer.load(tid)
    assert log.take() == ["Query"]
    assert state is not None
    for turn in range(3):
        state.messages += [AgentMessage.user(f"q{turn}"), AgentMessage.assistant(f"a{turn}")]
        dynamodb_checkpointer.save(tid, state)
        assert log.take() == ["TransactWriteItems"]
    state.metadata["only"] = "head"
    dynamodb_checkpointer.save(tid, state)
    assert log.take() == ["PutItem"], "a save without new messages writes the head alone"


def test_appends_compact_the_open_run_and_keep_the_item_count_bounded(
    dynamodb_checkpointer: DynamoDbCheckpointer,
    dynamodb_client: Any,
    table: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(writes, "OPEN_RUN_MAX_CHUNKS", 4)
    monkeypatch.setattr(writes, "MAX_RUNS", 3)
    tid = prefix + "compact"
    state = AgentStateSnapshot()
    counts = []
    for i in range(40):
        state.messages.append(AgentMessage.user(f"m{i}"))
        dynamodb_checkpointer.save(tid, state)
        counts.append(len(raw_items(dynamodb_client, table, tid)))
        assert_no_garbage(dynamodb_client, table, tid)
    loaded = dynamodb_checkpointer.load(tid)
    assert loaded is not None and loaded.messages == state.messages and loaded.version == 40
    # head + at most MAX_RUNS sealed runs of one chunk + a full open run
    assert max(counts) <= 1 + 3 + 4, counts
