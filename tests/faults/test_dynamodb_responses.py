"""DynamoDB: a response cut short by a dropped connection is an error, never a parsed half.

Found by the dropped-connections suite. botocore reads bodies without
enforcing ``Content-Length``, and ``http.client`` takes a header block cut at
end of stream as complete; standard-mode retries check ``x-amz-crc32`` only
while attempts remain. So a response cut mid-headers or mid-body was parsed:
``int('')`` of a truncated checksum header raised ``ValueError``, an empty or
truncated body parsed as "no item" (a load of a stored thread said None,
a listing missed threads), and a commit whose answer was cut, retried, found
its own write and raised ``ConflictError`` although it was applied.
"""

from __future__ import annotations

from typing import Any, Iterator, Tuple

import pytest

from agents_persist import AgentMessage, AgentStateSnapshot, Checkpointer, from_url
from agents_persist.codec import encode_messages
from agents_persist.errors import BackendUnavailableError
from tests.faults.proxy import CUT, Fault, FaultProxy, FaultSchedule


@pytest.fixture
def setup(dynamodb_server: Any) -> Iterator[Tuple[Checkpointer, FaultProxy, Any]]:
    from tests.fixtures.dynamodb import CREDENTIALS, REGION, unique_table

    table = unique_table("cut")

    def url(host: str, port: int) -> str:
        return f"dynamodb://{REGION}/{table}?endpoint_url=http://{host}:{port}"

    direct = from_url(url(dynamodb_server.host, dynamodb_server.port), create_table=True, **CREDENTIALS)
    direct.exists("setup")
    proxy = FaultProxy((dynamodb_server.host, dynamodb_server.port), FaultSchedule(chunk_rate=0.0, connect_rate=0.0))
    cp = from_url(url(*proxy.address), timeout=2.0, max_attempts=1, **CREDENTIALS)
    try:
        yield cp, proxy, direct
    finally:
        cp.close()
        proxy.close()
        direct.close()


def stored(cp: Checkpointer, thread_id: str) -> AgentStateSnapshot:
    state = AgentStateSnapshot(messages=[AgentMessage.user("hello"), AgentMessage.assistant("hi")])
    cp.save(thread_id, state)
    return state


@pytest.mark.parametrize(
    "match, offset",
    [
        (b"x-amz-crc32:", len(b"x-amz-crc32:")),  # the checksum header's value cut off
        (b"x-amz-crc32: ", len(b"x-amz-crc32: ") + 2),  # the checksum cut to its first digits
        (b"Content-Length", 0),  # the header block cut before the length: no body at all
        (b'{"', 5),  # the body cut after a few bytes
    ],
    ids=["crc-empty", "crc-digits", "before-length", "body"],
)
def test_load_of_a_cut_response_raises(setup: Tuple[Checkpointer, FaultProxy, Any], match: bytes, offset: int) -> None:
    cp, proxy, direct = setup
    stored(direct, "t")
    proxy.schedule.force(Fault(CUT), "down", match=match, offset=offset)
    with pytest.raises(BackendUnavailableError) as caught:
        cp.load("t")
    assert proxy.counts[CUT] == 1
    assert caught.value.maybe_applied is False
    assert cp.load("t") is not None  # the next call is fine


def test_listing_of_a_cut_response_raises(setup: Tuple[Checkpointer, FaultProxy, Any]) -> None:
    cp, proxy, direct = setup
    for i in range(3):
        stored(direct, f"list:{i}")
    proxy.schedule.force(Fault(CUT), "down", match=b'{"', offset=5)
    with pytest.raises(BackendUnavailableError):
        cp.list_threads("list:")
    assert len(cp.list_threads("list:").threads) == 3


def test_commit_whose_answer_was_cut_is_not_a_conflict(dynamodb_server: Any, setup: Tuple[Checkpointer, FaultProxy, Any]) -> None:
    from tests.fixtures.dynamodb import CREDENTIALS

    _, proxy, direct = setup
    url = f"dynamodb://us-east-1/{direct.table_name}?endpoint_url=http://{proxy.host}:{proxy.port}"
    with from_url(url, timeout=2.0, max_attempts=3, **CREDENTIALS) as cp:  # botocore retries the commit
        state = stored(cp, "c")
        state.messages.append(AgentMessage.user("more"))
        proxy.schedule.force(Fault(CUT), "down", match=b"{}", offset=1)  # a write's answer is {}
        try:
            cp.save("c", state)
            outcome: Any = None
        except Exception as exc:  # noqa: BLE001
            outcome = exc
        assert proxy.counts[CUT] == 1
        now = direct.load("c")
        assert now is not None
        applied = encode_messages(now.messages) == encode_messages(state.messages)
        if outcome is None:
            assert applied
        else:
            assert isinstance(outcome, BackendUnavailableError), repr(outcome)
            assert outcome.maybe_applied or not applied
