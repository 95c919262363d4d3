"""The boto3 client: a caller's client, forks, a dead endpoint, requests retried after a lost response."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Any, Callable, List, Optional

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


def _script_requests(cp: Any, operation: str, outcomes: List[str]) -> List[str]:
    """Make the next ``operation`` requests fail as ``outcomes`` says, in order; later ones pass.

    ``"lost"``: the request reaches the server but its response never arrives (a read timeout);
    ``"refused"``: it fails before anything is sent (connection refused). Returns the outcomes left.
    """
    from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

    session = cp.store.client.get()._endpoint.http_session
    original = session.send
    pending = list(outcomes)

    def send(request: Any) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        if not pending or not target.endswith("." + operation):
            return original(request)
        outcome = pending.pop(0)
        if outcome == "refused":
            raise EndpointConnectionError(endpoint_url=request.url, error="refused by the test")
        original(request)  # the server applies it...
        raise ReadTimeoutError(endpoint_url=request.url)  # ...but the reply never arrives

    session.send = send
    return pending


def _lose_first_response(cp: Any, operation: str) -> List[str]:
    """Make the first ``operation`` request reach the server but lose its response, so botocore retries it."""
    return _script_requests(cp, operation, ["lost"])


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
    assert not armed, "the lost response was not simulated"
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
    assert not armed, "the lost response was not simulated"
    assert not dynamodb_checkpointer.exists(tid)
    assert raw_items(dynamodb_client, table, tid) == [], "chunk items were left behind"


# ---------------------------------------------------------------------------------------------- maybe_applied


def test_a_write_whose_answer_was_lost_and_whose_retries_were_refused_may_have_been_applied(
    dynamodb_checkpointer: Any, prefix: str
) -> None:
    """botocore raises the last attempt's error (refused), but the first attempt reached DynamoDB."""
    cp, tid = dynamodb_checkpointer, prefix + "maybe"
    cp.append(tid, [AgentMessage.user("m0")])
    left = _script_requests(cp, "TransactWriteItems", ["lost", "refused", "refused"])
    with pytest.raises(BackendUnavailableError) as raised:
        cp.append(tid, [AgentMessage.user("m1")], idempotency_key="turn-1")
    assert not left and raised.value.maybe_applied and "may have been applied" in str(raised.value)
    assert cp.append(tid, [AgentMessage.user("m1")], idempotency_key="turn-1") == 2, "the retry applies it once"
    stored = cp.load(tid)
    assert stored is not None and [m.content for m in stored.messages] == ["m0", "m1"] and stored.version == 2
    _script_requests(cp, "DeleteItem", ["lost", "refused", "refused"])
    with pytest.raises(BackendUnavailableError) as raised:
        cp.delete(tid)
    assert raised.value.maybe_applied and not cp.exists(tid), "the first attempt deleted it"


def test_a_write_refused_before_sending_and_a_failed_read_were_not_applied(dynamodb_checkpointer: Any, prefix: str) -> None:
    cp, tid = dynamodb_checkpointer, prefix + "refused"
    cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("m0")]))
    state = cp.load(tid)
    assert state is not None
    state.messages.append(AgentMessage.user("m1"))
    _script_requests(cp, "TransactWriteItems", ["refused"] * 3)
    with pytest.raises(BackendUnavailableError) as raised:
        cp.save(tid, state)
    assert raised.value.maybe_applied is False
    _script_requests(cp, "Query", ["lost"] * 3)
    with pytest.raises(BackendUnavailableError) as raised:
        cp.load(tid)
    assert raised.value.maybe_applied is False, "a read never applies anything"
    assert cp.get_version(tid) == 1


def test_a_frozen_server_times_out_writes_as_maybe_applied_and_a_dead_one_refuses_them_as_not(own_moto: MotoServer) -> None:
    url = dynamodb_url(own_moto, unique_table("frozen"))
    cp = from_url(url, create_table=True, timeout=1.0, max_attempts=2, **CREDENTIALS)
    try:
        cp.save("t", AgentStateSnapshot(messages=[AgentMessage.user("m0")]))
        state = cp.load("t")
        assert state is not None and own_moto.pid is not None
        state.messages.append(AgentMessage.user("m1"))
        os.kill(own_moto.pid, signal.SIGSTOP)  # TCP still accepts: requests are sent, answers never come
        try:
            with pytest.raises(BackendUnavailableError) as raised:
                cp.save("t", state)
            assert raised.value.maybe_applied is True
            # A read, and a delete whose first request (the Query of the thread's items) times out before
            # any DeleteItem is sent, have applied nothing.
            for call in (lambda: cp.get_version("t"), lambda: cp.delete("t")):
                with pytest.raises(BackendUnavailableError) as raised:
                    call()
                assert raised.value.maybe_applied is False
        finally:
            os.kill(own_moto.pid, signal.SIGCONT)
        own_moto.kill()
        for call in (lambda: cp.save("t", state), lambda: cp.delete("t")):
            with pytest.raises(BackendUnavailableError) as raised:
                call()
            assert raised.value.maybe_applied is False, "a refused connection sent nothing"
    finally:
        cp.close()
