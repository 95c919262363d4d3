"""The boto3 client: a caller's client, forks, a dead endpoint, requests retried after a lost response."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any, Callable, Dict, List, Optional

import pytest

from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    BackendUnavailableError,
    DynamoDbCheckpointer,
    from_url,
)
from tests.backends.dynamodb.helpers import (
    PROCESS_TIMEOUT,
    increment,
    raw_items,
)
from tests.fixtures.dynamodb import (
    CREDENTIALS,
    dynamodb_url,
    unique_table,
)
from tests.servers import MotoServer


def test_caller_supplied_client_is_used_and_left_open(table: str, dynamodb_client: Any, prefix: str) -> None:
    cp = DynamoDbCheckpointer(table, client=dynamodb_client)
    tid = prefix + "client"
    cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("via your client")]))
    assert raw_items(dynamodb_client, table, tid)
    cp.delete(tid)
    cp.close()
    assert dynamodb_client.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"


_forked_cp: Optional[DynamoDbCheckpointer] = None


def _forked_updates(tid: str) -> None:
    assert _forked_cp is not None
    for _ in range(10):
        _forked_cp.update(tid, increment)


def test_forked_children_share_a_caller_client_checkpointer_safely(table: str, dynamodb_client: Any, prefix: str) -> None:
    global _forked_cp
    tid = prefix + "fork-client"
    cp = DynamoDbCheckpointer(table, client=dynamodb_client)
    cp.update(tid, increment)  # the client has been used before the fork
    _forked_cp = cp
    try:
        ctx = multiprocessing.get_context("fork")
        children = [ctx.Process(target=_forked_updates, args=(tid,)) for _ in range(2)]
        for child in children:
            child.start()
        for _ in range(10):
            cp.update(tid, increment)
        for child in children:
            child.join(PROCESS_TIMEOUT)
        assert [child.exitcode for child in children] == [0, 0]
        final = cp.load(tid)
        assert final is not None and final.metadata["n"] == 31
    finally:
        _forked_cp = None
        cp.delete(tid)
        cp.close()


def test_dead_endpoint_raises_backend_unavailable_quickly_and_recovers(own_moto: MotoServer) -> None:
    url = dynamodb_url(own_moto, unique_table("down"))
    cp = from_url(url, create_table=True, timeout=1.0, max_attempts=2, **CREDENTIALS)
    try:
        cp.save("t", AgentStateSnapshot(metadata={"v": 1}))
        own_moto.kill()
        calls: List[Callable[[], object]] = [
            lambda: cp.load("t"),
            lambda: cp.save("t", AgentStateSnapshot(metadata={"v": 2})),
            lambda: cp.list_threads(),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError):
                call()
            assert time.monotonic() - started < 2 * (1.0 + 1.0) + 5, "must fail within timeout-bounded retries"
        own_moto.start_again()  # same port, empty state: recreate the table
        from_url(url, create_table=True, **CREDENTIALS).close()
        assert cp.load("t") is None
        cp.save("t", AgentStateSnapshot(metadata={"v": 3}), force=True)
        loaded = cp.load("t")
        assert loaded is not None and loaded.metadata == {"v": 3}
    finally:
        cp.close()


def _lose_first_response(cp: Any, operation: str) -> Dict[str, bool]:
    """Make the first ``operation`` request reach the server but lose its response, so botocore retries it."""
    from botocore.exceptions import ReadTimeoutError

    session = cp.store.client.get()._endpoint.http_session
    original = session.send
    armed = {"armed": True}

    def send(request: Any) -> Any:
        response = original(request)  # the server applies it...
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        if armed["armed"] and target.endswith("." + operation):
            armed["armed"] = False
            raise ReadTimeoutError(endpoint_url=request.url)  # ...but the reply never arrives
        return response

    session.send = send
    return armed


def test_update_whose_write_was_retried_after_a_lost_response_applies_once(
    dynamodb_checkpointer: Any, dynamodb_client: Any, table: str, prefix: str
) -> None:
    tid = prefix + "retried"
    dynamodb_checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("m0")]))
    armed = _lose_first_response(dynamodb_checkpointer, "TransactWriteItems")
    calls: List[int] = []

    def reply(state: AgentStateSnapshot) -> None:
        calls.append(1)
        state.messages.append(AgentMessage.assistant("reply"))

    result = dynamodb_checkpointer.update(tid, reply)
    assert not armed["armed"], "the lost response was not simulated"
    assert len(calls) == 1 and result.version == 2
    stored = dynamodb_checkpointer.load(tid)
    assert stored is not None and [m.content for m in stored.messages] == ["m0", "reply"] and stored.version == 2


def test_delete_whose_request_was_retried_after_a_lost_response_removes_everything(
    dynamodb_checkpointer: Any, dynamodb_client: Any, table: str, prefix: str
) -> None:
    tid = prefix + "retried-delete"
    dynamodb_checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user(str(i)) for i in range(5)]))
    armed = _lose_first_response(dynamodb_checkpointer, "DeleteItem")
    assert dynamodb_checkpointer.delete(tid) is True
    assert not armed["armed"], "the lost response was not simulated"
    assert not dynamodb_checkpointer.exists(tid)
    assert raw_items(dynamodb_client, table, tid) == [], "chunk items were left behind"
