"""Helpers of the DynamoDB tests: raw item inspection with plain boto3, request logs, shared workloads."""

from __future__ import annotations

from typing import Any, Dict, List

from agents_persist import AgentMessage, AgentStateSnapshot, DynamoDbCheckpointer
from tests.spec import BackendSpec

AWS_ITEM_LIMIT = 409_600
MOTO_ITEM_LIMIT = 405_000
KILL_ROUNDS = 20
PROCESS_TIMEOUT = 240.0


def aws_item_size(item: Dict[str, Dict[str, Any]]) -> int:
    """An independent upper bound of AWS's item size: attribute names plus values.

    S: UTF-8 bytes; B: raw bytes; N: one byte per character plus one (AWS
    charges about one byte per two significant digits plus one).
    """
    size = 0
    for name, typed in item.items():
        size += len(name.encode("utf-8"))
        for kind, value in typed.items():
            if kind == "S":
                size += len(value.encode("utf-8"))
            elif kind == "B":
                size += len(value)
            elif kind == "N":
                size += len(value) + 1
            elif kind == "SS":  # the runs writers register in a head (``pd``)
                size += sum(len(entry.encode("utf-8")) for entry in value)
            else:
                raise AssertionError(f"unexpected attribute type {kind} in {name}")
    return size


def raw_items(client: Any, table: str, thread_id: str) -> List[Dict[str, Dict[str, Any]]]:
    """Every stored item of one thread, read with plain boto3."""
    request: Dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "thread_id = :t",
        "ExpressionAttributeValues": {":t": {"S": thread_id}},
        "ConsistentRead": True,
    }
    items: List[Dict[str, Dict[str, Any]]] = []
    while True:
        page = client.query(**request)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def assert_items_within_limits(client: Any, table: str, thread_id: str) -> List[Dict[str, Dict[str, Any]]]:
    items = raw_items(client, table, thread_id)
    assert items, "nothing stored"
    largest = max(aws_item_size(item) for item in items)
    assert largest <= AWS_ITEM_LIMIT and largest < MOTO_ITEM_LIMIT, largest
    return items


def referenced_sort_keys(items: List[Dict[str, Dict[str, Any]]]) -> List[str]:
    """Sort keys of the head and of every chunk its runs list (parsed here from the raw head)."""
    head = next(item for item in items if item["sk"]["S"] == "H")
    keys = ["H"]
    for attribute in ("r", "hr"):
        if attribute in head:
            for entry in head[attribute]["S"].rstrip("+").split(","):
                run_id, _, chunks = entry.partition(":")
                keys += [f"c{run_id}:{seq:06d}" for seq in range(int(chunks))]
    return keys


def assert_no_garbage(client: Any, table: str, thread_id: str) -> None:
    items = raw_items(client, table, thread_id)
    assert sorted(item["sk"]["S"] for item in items) == sorted(referenced_sort_keys(items))


class RequestLog:
    """Names of the DynamoDB API calls a checkpointer's client makes."""

    def __init__(self, cp: DynamoDbCheckpointer) -> None:
        self.calls: List[str] = []
        cp.store.client.get().meta.events.register("before-call.dynamodb", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def take(self) -> List[str]:
        calls, self.calls = self.calls, []
        return calls


def table_name(spec: BackendSpec) -> str:
    return spec.url.split("/")[3].split("?")[0]


def padded(text: str, size: int) -> str:
    return text + "." * max(0, size - len(text))


def increment(state: AgentStateSnapshot) -> None:
    state.metadata["n"] = state.metadata.get("n", 0) + 1
    state.messages.append(AgentMessage.user(f"+1 #{state.metadata['n']}"))
