"""TTL (hidden once expired, purged, chunk TTLs covering the head) and listing by index or by scan."""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
)
from tests.backends.dynamodb.helpers import (
    assert_no_garbage,
    raw_items,
    table_name,
)
from tests.spec import BackendSpec


def test_expired_thread_is_hidden_although_dynamodb_keeps_it_and_purge_removes_it(
    isolated_spec: BackendSpec, dynamodb_client: Any
) -> None:
    cp = isolated_spec.build(ttl=0.5)
    table = table_name(isolated_spec)
    try:
        tid = "expiring"
        cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("short")]))
        cp.save("forever", AgentStateSnapshot(), force=True)
        time.sleep(0.8)
        assert raw_items(dynamodb_client, table, tid), "moto (like AWS, for a while) still stores it"
        assert cp.load(tid) is None and not cp.exists(tid) and cp.get_version(tid) == 0
        assert [info.thread_id for info in cp.list_threads()] == []
        assert cp.purge_expired() == 2
        assert raw_items(dynamodb_client, table, tid) == []
    finally:
        cp.close()


def test_items_carry_a_ttl_attribute_that_covers_the_head(
    dynamodb_spec: BackendSpec, dynamodb_client: Any, table: str, prefix: str
) -> None:
    tid = prefix + "ttl"
    assert dynamodb_client.describe_time_to_live(TableName=table)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "ttl",
    }

    def ttls() -> Dict[str, Optional[int]]:
        return {
            item["sk"]["S"]: int(item["ttl"]["N"]) if "ttl" in item else None for item in raw_items(dynamodb_client, table, tid)
        }

    short, long_, never = dynamodb_spec.build(ttl=60), dynamodb_spec.build(ttl=600), dynamodb_spec.build()
    try:
        state = AgentStateSnapshot()
        short.save(tid, state)  # no messages yet: the first append starts the log
        for text in ("a", "b"):
            state.messages.append(AgentMessage.user(text))
            short.save(tid, state)
        found = ttls()
        head_ttl = found.pop("H")
        assert head_ttl is not None and head_ttl >= time.time() + 50
        assert found and all(t is not None and t >= head_ttl + 50 for t in found.values()), "chunks outlive the head"
        head = next(item for item in raw_items(dynamodb_client, table, tid) if item["sk"]["S"] == "H")
        assert int(head["k"]["N"]) == min(t for t in found.values() if t is not None)
        # A longer TTL than the chunks' rewrites them with new TTLs; no TTL removes them all.
        state.messages.append(AgentMessage.user("c"))
        long_.save(tid, state, force=True)
        found = ttls()
        head_ttl = found.pop("H")
        assert head_ttl is not None and all(t is not None and t >= head_ttl for t in found.values())
        never.save(tid, AgentStateSnapshot(messages=state.messages + [AgentMessage.user("d")]), force=True)
        assert set(ttls().values()) == {None}
        assert_no_garbage(dynamodb_client, table, tid)
        loaded = never.load(tid)
        assert loaded is not None and [m.content for m in loaded.messages] == ["a", "b", "c", "d"]
    finally:
        never.delete(tid)
        for cp in (short, long_, never):
            cp.close()


# ---------------------------------------------------------------------------- listing


def test_listing_by_scan_matches_listing_by_index(dynamodb_spec: BackendSpec, prefix: str) -> None:
    by_index, by_scan = dynamodb_spec.build(), dynamodb_spec.build(list_index=None)
    try:
        ids = [f"{prefix}{i}" for i in range(5)]
        for tid in ids:
            by_index.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("x")] * len(tid)))
        expected = list(reversed(ids))
        for cp in (by_index, by_scan):
            pages, cursor = [], None
            while True:
                page = cp.list_threads(prefix, limit=2, cursor=cursor)
                pages += [info.thread_id for info in page.threads]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert pages == expected
        assert [i.message_count for i in by_scan.list_threads(prefix).threads] == [len(t) for t in expected]
    finally:
        for tid in ids:
            by_index.delete(tid)
        by_index.close()
        by_scan.close()


def test_iter_threads_walks_the_tables_scan_order_and_resumes_after_a_deleted_thread(
    dynamodb_checkpointer: Any, dynamodb_client: Any, table: str, prefix: str
) -> None:
    """The walk is DynamoDB's ``Scan`` order (moto's happens to be by key; AWS's is by hash): compare with a raw Scan."""
    cp, walk = dynamodb_checkpointer, prefix + "walk-"
    for i in range(9):
        cp.save(f"{walk}{i:02d}", AgentStateSnapshot(messages=[AgentMessage.user("x" * 1000)] * i))
    request: Dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    raw = []
    while True:
        page = dynamodb_client.scan(**request)
        raw += [i["thread_id"]["S"] for i in page["Items"] if i["sk"]["S"] == "H" and i["thread_id"]["S"].startswith(walk)]
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert len(raw) == 9 and [info.thread_id for info in cp.iter_threads(walk, page_size=2)] == raw
    first = cp.store.scan(walk, None, 3, time.time())
    assert cp.delete(first[-1].thread_id)
    rest = cp.store.scan(walk, first[-1].thread_id, 100, time.time())
    assert [info.thread_id for info in first + rest] == raw, "the walk resumes after a thread deleted meanwhile"
