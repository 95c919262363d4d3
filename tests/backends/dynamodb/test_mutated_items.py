"""Mutated stored items (hypothesis): every read path gives a snapshot or CorruptSnapshotError, never hangs.

See :mod:`tests.backends.dynamodb.mutations` for the mutations and the
calls run on each case. The outcome classes are counted and printed (run
with ``-s`` to see the table); anything but a snapshot, ``None``, a
listing or a ``CorruptSnapshotError`` naming the thread fails the case.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import Counter
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents_persist import AgentMessage, AgentStateSnapshot, CorruptSnapshotError, TodoItem
from agents_persist.backends.dynamodb import layout, writes
from tests.backends.dynamodb.helpers import table_name
from tests.backends.dynamodb.mutations import (
    Item,
    deep_head,
    deep_message,
    deep_msgpack,
    mutations,
    read_items,
    run_case,
    tally,
    write_items,
)
from tests.spec import BackendSpec

#: Examples of the hypothesis test: about 0.1 s each against moto_server.
EXAMPLES = 100
ACCEPTED = {
    "load": {"same", "changed", "none", "corrupt"},
    "exists": {"ok", "corrupt"},
    "get_version": {"ok", "corrupt"},
    "list_threads": {"listed", "flagged", "absent"},
    "iter_threads": {"listed", "flagged", "absent"},
    "purge_expired": {"ok"},
    "save_force": {"ok"},
    "load_after_save": {"same"},
    "delete": {"ok"},
}
COUNTS: "Counter[Tuple[str, str]]" = Counter()


def _state(count: int, size: int) -> AgentStateSnapshot:
    return AgentStateSnapshot(
        messages=[AgentMessage.user(f"m{i}:" + "x" * size) for i in range(count)],
        todos=[TodoItem(content="check", status="pending")],
        metadata={"k": [1, 2.5, "three", None]},
    )


@pytest.fixture(scope="module")
def bases(dynamodb_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Any, Any, str, Dict[str, Any]]]:
    """A checkpointer on a table of its own, a raw client, its table and base threads of several shapes."""
    import boto3

    from tests.fixtures.dynamodb import CREDENTIALS, client_kwargs, dynamodb_url, unique_table

    options = {"create_table": True, "timeout": 10.0, **CREDENTIALS}
    spec = BackendSpec("dynamodb", dynamodb_url(dynamodb_server, unique_table("mut")), options)
    cp = spec.build()
    ttl_cp = spec.build(ttl=3600)
    client = boto3.client("dynamodb", **client_kwargs(dynamodb_server))
    table = table_name(spec)
    shapes: Dict[str, Any] = {}
    # Runs dated two hours back: a crashed writer's, not a live one's, once nothing lists them.
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(writes, "new_run_id", lambda now: layout.new_run_id(now - 7200))
    # Small: one transaction, inline head, one sealed run.
    small = _state(3, 10)
    cp.save("base-small", small)
    shapes["small"] = small
    # Appended: an open run of several chunks and a sealed run, an idempotency key, a TTL.
    for planner in (ttl_cp.store.planner,):
        planner.chunk_payload_bytes = 120
    grown = _state(4, 40)
    ttl_cp.save("base-grown", grown)
    ttl_cp.append("base-grown", [AgentMessage.assistant("a" * 100), AgentMessage.user("b" * 90)], idempotency_key="k1")
    ttl_cp.append("base-grown", [AgentMessage.tool("done", tool_call_id="t1")])
    shapes["grown"] = ttl_cp.load("base-grown")
    # Spilled: the head blob in a run of its own, messages over several chunks.
    spilled = _state(6, 200)
    spilled.metadata["big"] = "y" * 600
    ttl_cp.store.planner.chunk_payload_bytes = 500
    original = writes.HEAD_ITEM_TARGET_BYTES
    writes.HEAD_ITEM_TARGET_BYTES = 300
    try:
        ttl_cp.save("base-spilled", spilled)
    finally:
        writes.HEAD_ITEM_TARGET_BYTES = original
    shapes["spilled"] = spilled
    monkeypatch.undo()
    raw = {name: (read_items(client, table, f"base-{name}"), state) for name, state in shapes.items()}
    assert len(raw["spilled"][0]) > 4 and "hr" in raw["spilled"][0][0], raw["spilled"][0][0].keys()
    assert len(raw["grown"][0]) > 3 and raw["grown"][0][0]["r"]["S"].endswith("+")
    ttl_cp.close()
    try:
        yield cp, client, table, raw
    finally:
        cp.close()


_numbers = itertools.count()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(data=st.data())
def test_mutated_items_give_a_snapshot_or_corrupt_snapshot_error(data: Any, bases: Tuple[Any, Any, str, Dict[str, Any]]) -> None:
    cp, client, table, raw = bases
    shape = data.draw(st.sampled_from(sorted(raw)), label="shape")
    items, expected = raw[shape]
    description, mutated = data.draw(mutations(items), label="mutation")
    prefix = f"mut{uuid.uuid4().hex[:8]}:"
    tid = f"{prefix}{next(_numbers)}"
    write_items(client, table, tid, mutated)
    outcomes = run_case(cp, tid, prefix, expected)
    tally(outcomes, COUNTS)
    left = read_items(client, table, tid)
    bad = {op: outcome for op, outcome in outcomes.items() if outcome.split(" (")[0] not in ACCEPTED[op]}
    assert not bad and not left, f"{shape}: {description}: {bad}; left after delete: {[i['sk'] for i in left]}"


def test_zz_print_outcome_table() -> None:
    """The counts of the hypothesis test above (run with -s)."""
    if not COUNTS:
        pytest.skip("the hypothesis test did not run")
    width = max(len(op) for op, _ in COUNTS)
    for (operation, outcome), count in sorted(COUNTS.items()):
        print(f"  {operation:<{width}}  {outcome:<20} {count}")


# ---------------------------------------------------------------- targeted cases (each failed before the fix)


def _mutated(bases: Tuple[Any, Any, str, Dict[str, Any]], shape: str, change: Any) -> Tuple[Any, str, AgentStateSnapshot]:
    cp, client, table, raw = bases
    items, expected = raw[shape]
    copy: List[Item] = [dict(item) for item in items]
    change(copy)
    tid = f"case{uuid.uuid4().hex[:8]}"
    write_items(client, table, tid, copy)
    return cp, tid, expected


@pytest.mark.parametrize(
    "runs",
    ["zz:99999999", "0000000000000000:99999999", "{run}:99999999", "{run}:2,{run}:2", "{all},{all},{all},{all},{all},{all}"],
)
def test_run_references_are_checked_before_they_are_followed(bases: Any, runs: str) -> None:
    def change(items: List[Item]) -> None:
        head = items[0]
        first = head["r"]["S"].rstrip("+").split(",")[0].split(":")[0]
        head["r"] = {"S": runs.format(run=first, all=head["r"]["S"].rstrip("+"))}

    cp, tid, _ = _mutated(bases, "grown", change)
    started = time.monotonic()
    with pytest.raises(CorruptSnapshotError) as raised:
        cp.load(tid)
    assert raised.value.thread_id == tid and time.monotonic() - started < 2
    assert cp.save(tid, AgentStateSnapshot(), force=True) >= 1 and cp.delete(tid)


@pytest.mark.parametrize("attribute", ["v", "w", "u", "n"])
@pytest.mark.parametrize("value", [None, {"S": "x"}, {"N": "9.9999999999999999999999999999999999999E+125"}, {"B": b"\x00"}])
def test_head_scalars_of_the_wrong_type_or_range_are_corrupt_everywhere(bases: Any, attribute: str, value: Any) -> None:
    if attribute == "u" and value is not None and "N" not in value:
        pytest.skip("AWS refuses an index key of another type")

    def change(items: List[Item]) -> None:
        if value is None:
            del items[0][attribute]
        else:
            items[0][attribute] = value

    cp, tid, _ = _mutated(bases, "small", change)
    if (attribute, value) in (("u", None), ("w", {"S": "x"})):
        assert cp.load(tid) is not None  # a head without its update time, or another token, still loads
    else:
        with pytest.raises(CorruptSnapshotError):
            cp.load(tid)
    for call in (cp.exists, cp.get_version):
        try:
            call(tid)
        except CorruptSnapshotError as exc:
            assert exc.thread_id == tid
    listed = [info for info in cp.list_threads() if info.thread_id == tid]
    walked = [info for info in cp.iter_threads() if info.thread_id == tid]
    assert all(info.corrupt for info in listed + walked) or attribute == "w"  # listing reads v, n, u, x
    cp.purge_expired()
    assert cp.save(tid, AgentStateSnapshot(), force=True) >= 1
    assert cp.delete(tid) is True


def test_a_chunk_payload_of_the_wrong_type_is_corrupt(bases: Any) -> None:
    def change(items: List[Item]) -> None:
        items[1]["p"] = {"S": "not bytes"}

    cp, tid, _ = _mutated(bases, "grown", change)
    with pytest.raises(CorruptSnapshotError):
        cp.load(tid)
    assert cp.delete(tid) is True


def test_one_corrupt_thread_does_not_break_listing_the_others(bases: Any) -> None:
    cp, client, table, raw = bases
    prefix = f"list{uuid.uuid4().hex[:6]}:"
    for i in range(3):
        cp.save(f"{prefix}{i}", AgentStateSnapshot(metadata={"i": i}))
    client.update_item(
        TableName=table,
        Key={"thread_id": {"S": f"{prefix}1"}, "sk": {"S": "H"}},
        UpdateExpression="SET #n = :bad",
        ExpressionAttributeNames={"#n": "n"},
        ExpressionAttributeValues={":bad": {"S": "many"}},
    )
    listed = {info.thread_id: info.corrupt for info in cp.list_threads(prefix)}
    walked = {info.thread_id: info.corrupt for info in cp.iter_threads(prefix, page_size=1)}
    expected = {f"{prefix}0": False, f"{prefix}1": True, f"{prefix}2": False}
    assert listed == expected and walked == expected
    for i in range(3):
        assert cp.delete(f"{prefix}{i}") is True


def test_deeply_nested_bytes_that_are_no_head_are_corrupt(bases: Any) -> None:
    def change(items: List[Item]) -> None:
        items[0]["h"] = {"B": deep_msgpack(100_000)}

    cp, tid, _ = _mutated(bases, "small", change)
    with pytest.raises(CorruptSnapshotError):
        cp.load(tid)
    assert cp.delete(tid)


@pytest.mark.parametrize("blob", [deep_head(100_000)], ids=["in-metadata"])
def test_deeply_nested_head_is_corrupt(bases: Any, blob: bytes) -> None:
    def change(items: List[Item]) -> None:
        items[0]["h"] = {"B": blob}

    cp, tid, _ = _mutated(bases, "small", change)
    try:
        with pytest.raises(CorruptSnapshotError):
            cp.load(tid)
    finally:
        cp.delete(tid)


def test_deeply_nested_message_is_corrupt(bases: Any) -> None:
    cp, client, table, raw = bases
    tid = f"deep{uuid.uuid4().hex[:8]}"
    cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("x")]))
    item = next(i for i in read_items(client, table, tid) if i["sk"]["S"] != "H")
    blob = deep_message(100_000)
    item["p"] = {"B": len(blob).to_bytes(4, "big") + blob}
    write_items(client, table, tid, [item])
    try:
        with pytest.raises(CorruptSnapshotError):
            cp.load(tid)
    finally:
        cp.delete(tid)


def test_a_version_at_the_counter_limit_is_corrupt_and_a_forced_save_repairs_it(bases: Any) -> None:
    """A save increments the version: at 2**63 - 1 it would store 2**63, which no read accepts (found by the fuzz)."""

    def change(items: List[Item]) -> None:
        items[0]["v"] = {"N": str(2**63 - 1)}

    cp, tid, _ = _mutated(bases, "small", change)
    try:
        with pytest.raises(CorruptSnapshotError):
            cp.load(tid)
        fresh = AgentStateSnapshot(messages=[AgentMessage.user("repaired")])
        cp.save(tid, fresh, force=True)
        loaded = cp.load(tid)
        assert loaded == fresh and loaded is not None and loaded.version == 1
    finally:
        cp.delete(tid)
