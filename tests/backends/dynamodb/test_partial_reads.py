"""DynamoDB partial reads: the head, then only the chunk items holding the slice (found by the head's ``ri``).

Heads of older releases have no ``ri`` and are read whole (one ``Query``);
a rewrite racing the read makes it start again on the new head.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Tuple

import boto3
import pytest

from agents_persist import AgentMessage, AgentStateSnapshot, DynamoDbCheckpointer, codec
from agents_persist.backends.dynamodb import table as table_module
from tests.backends.dynamodb.helpers import table_name
from tests.fixtures.dynamodb import AnyMotoServer, client_kwargs
from tests.spec import BackendSpec

BOUNDS = [None, 0, 1, 5, 31, 32, 33, 150, 299, 300, -1, -2, -20, -33, -150, -299, -300, -301]


def _messages(count: int, start: int = 0) -> List[AgentMessage]:
    return [AgentMessage.user(f"message {i}: " + "x" * (i % 90)) for i in range(start, start + count)]


def _blobs(items: List[AgentMessage]) -> bytes:
    return b"".join(codec.encode_messages(items))


class Recorder:
    """Wraps a store's client: the operations called and the items each returned."""

    def __init__(self, cp: DynamoDbCheckpointer) -> None:
        self.calls: List[Tuple[str, int]] = []
        client = cp.store.client
        original = client.call

        def call(operation: str, expect: Tuple[str, ...] = (), **kwargs: Any) -> Dict[str, Any]:
            page = original(operation, expect, **kwargs)
            if operation == "batch_get_item":
                items = sum(len(found) for found in page.get("Responses", {}).values())
            else:
                items = len(page.get("Items", [])) + ("Item" in page)
            self.calls.append((operation, items))
            return page

        client.call = call  # type: ignore[method-assign]

    def clear(self) -> None:
        self.calls.clear()


@pytest.fixture
def cp(dynamodb_spec: BackendSpec, prefix: str) -> Iterator[DynamoDbCheckpointer]:
    checkpointer = dynamodb_spec.build()
    assert isinstance(checkpointer, DynamoDbCheckpointer)
    yield checkpointer
    for info in list(checkpointer.iter_threads(prefix)):
        checkpointer.delete(info.thread_id)
    checkpointer.close()


@pytest.fixture
def raw(dynamodb_server: AnyMotoServer) -> Any:
    return boto3.client("dynamodb", **client_kwargs(dynamodb_server))


def _grid(cp: DynamoDbCheckpointer, tid: str, expected: List[AgentMessage], bounds: List[Any] = BOUNDS) -> None:
    for start in bounds:
        for stop in bounds:
            assert _blobs(cp.load_messages(tid, start, stop)) == _blobs(expected[start:stop]), (start, stop)


def test_tail_of_ten_thousand_messages_reads_the_head_and_a_chunk_or_two(cp: DynamoDbCheckpointer, prefix: str) -> None:
    tid = prefix + "long"
    cp.store.planner.chunk_payload_bytes = 50_000  # a sealed run of many chunks, from little data
    history = _messages(9_000)
    cp.save(tid, AgentStateSnapshot(messages=history))
    for i in range(9_000, 10_000, 10):  # 100 appends: open runs, compacted after 32 chunks
        more = _messages(10, i)
        cp.append(tid, more)
        history += more
    recorder = Recorder(cp)
    assert _blobs(cp.tail(tid, 20)) == _blobs(history[-20:])
    assert [op for op, _ in recorder.calls] == ["get_item", "batch_get_item"]
    assert recorder.calls[1][1] <= 2, recorder.calls
    recorder.clear()
    assert _blobs(cp.load_messages(tid, 4_321, 4_331)) == _blobs(history[4_321:4_331])
    assert recorder.calls[1][1] <= 2, recorder.calls
    recorder.clear()
    cp.load(tid)
    assert sum(items for _, items in recorder.calls) > 10, "a whole load reads every chunk (the comparison)"
    assert cp.message_count(tid) == 10_000


def test_slices_across_chunks_runs_and_compactions(cp: DynamoDbCheckpointer, prefix: str) -> None:
    tid = prefix + "grid"
    cp.store.planner.chunk_payload_bytes = 97  # messages straddle chunk items, length prefixes too
    state = AgentStateSnapshot(messages=_messages(40))
    cp.save(tid, state)
    _grid(cp, tid, state.messages, [None, 0, 1, 7, 39, 40, -1, -9, -40])
    for i in range(40, 300, 5):  # open runs fill and are compacted into sealed ones
        state.messages.extend(_messages(5, i))
        cp.save(tid, state)
    _grid(cp, tid, state.messages)
    state.messages[3] = AgentMessage.user("edited")
    cp.save(tid, state)  # a rewrite: one sealed run, indexed anew
    _grid(cp, tid, state.messages, [None, 0, 3, 4, 150, -1, -297])


def test_heads_without_an_index_are_read_whole_until_a_rewrite(
    cp: DynamoDbCheckpointer, raw: Any, dynamodb_spec: BackendSpec, prefix: str
) -> None:
    tid = prefix + "old"
    cp.store.planner.chunk_payload_bytes = 200
    state = AgentStateSnapshot(messages=_messages(30))
    cp.save(tid, state)
    cp.append(tid, _messages(3, 30))
    state = cp.load(tid)
    assert state is not None
    key = {"thread_id": {"S": tid}, "sk": {"S": "H"}}
    raw.update_item(TableName=table_name(dynamodb_spec), Key=key, UpdateExpression="REMOVE ri")  # an older release's head
    cp.store._heads.remember(tid, None)
    recorder = Recorder(cp)
    _grid(cp, tid, state.messages, [None, 0, 5, 32, -1, -4])
    assert "batch_get_item" not in {op for op, _ in recorder.calls} and "query" in {op for op, _ in recorder.calls}
    state.messages.extend(_messages(2, 33))
    cp.save(tid, state)  # an append onto an unindexed log: still no index
    assert "ri" not in raw.get_item(TableName=table_name(dynamodb_spec), Key=key, ConsistentRead=True)["Item"]
    _grid(cp, tid, state.messages, [None, 0, 33, -1, -3])
    state.messages[0] = AgentMessage.user("rewritten")
    cp.save(tid, state)
    recorder.clear()
    _grid(cp, tid, state.messages, [None, 0, 33, -1, -3])
    assert "query" not in {op for op, _ in recorder.calls}, "the rewrite indexed the thread"


def test_an_index_that_does_not_describe_the_runs_is_ignored(
    cp: DynamoDbCheckpointer, raw: Any, dynamodb_spec: BackendSpec, prefix: str
) -> None:
    tid = prefix + "badindex"
    state = AgentStateSnapshot(messages=_messages(12))
    cp.save(tid, state)
    key = {"thread_id": {"S": tid}, "sk": {"S": "H"}}
    for bad in ("11", "12:3.0", "x", "12,4"):
        raw.update_item(
            TableName=table_name(dynamodb_spec),
            Key=key,
            UpdateExpression="SET ri = :ri",
            ExpressionAttributeValues={":ri": {"S": bad}},
        )
        assert _blobs(cp.tail(tid, 5)) == _blobs(state.messages[-5:]), bad


def test_a_rewrite_between_the_head_and_its_chunks_makes_the_read_start_again(
    cp: DynamoDbCheckpointer, dynamodb_spec: BackendSpec, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tid = prefix + "race"
    cp.save(tid, AgentStateSnapshot(messages=_messages(50)))
    other = dynamodb_spec.build()
    newer = _messages(60, 1000)
    real = table_module.get_chunks
    calls: List[int] = []

    def racing(client: Any, thread_id: str, sort_keys: List[str]) -> Dict[str, bytes]:
        if not calls:
            state = other.load(tid)
            assert state is not None
            state.messages = list(newer)
            other.save(tid, state)  # commits, then deletes the chunks the first head listed
        calls.append(len(sort_keys))
        return real(client, thread_id, sort_keys)

    monkeypatch.setattr(table_module, "get_chunks", racing)
    try:
        assert _blobs(cp.tail(tid, 7)) == _blobs(newer[-7:])
        assert len(calls) == 2
    finally:
        other.close()
