"""What only the DynamoDB backend has: item layout and sizes, the large-write path, crashes, TTL, errors.

Everything runs against ``moto_server`` over HTTP (see ``tests/fixtures/dynamodb.py``)
with real boto3 calls, and inspects the stored items with a raw boto3 client.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    BackendUnavailableError,
    ConfigurationError,
    DynamoDbCheckpointer,
    from_url,
)
from agents_persist.backends import dynamodb as dynamodb_module
from agents_persist.codec import encode_messages
from tests.fixtures.dynamodb import (
    CREDENTIALS,
    AnyMotoServer,
    SerializedMotoServer,
    dynamodb_url,
    unique_table,
)
from tests.servers import MotoServer
from tests.spec import BackendSpec

AWS_ITEM_LIMIT = 409_600
MOTO_ITEM_LIMIT = 405_000
KILL_ROUNDS = 20
PROCESS_TIMEOUT = 240.0


# ---------------------------------------------------------------------------- helpers


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
        cp._client().meta.events.register("before-call.dynamodb", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def take(self) -> List[str]:
        calls, self.calls = self.calls, []
        return calls


def table_name(spec: BackendSpec) -> str:
    return spec.url.split("/")[3].split("?")[0]


def padded(text: str, size: int) -> str:
    return text + "." * max(0, size - len(text))


@pytest.fixture
def table(dynamodb_spec: BackendSpec) -> str:
    """The session table's name; building a checkpointer first makes sure it exists (create_table=True)."""
    dynamodb_spec.build().close()
    return table_name(dynamodb_spec)


@pytest.fixture
def isolated_spec(dynamodb_server: AnyMotoServer) -> BackendSpec:
    """A spec on a table of its own, for tests that scan or purge the whole table."""
    options = {"create_table": True, "timeout": 10.0, **CREDENTIALS}
    return BackendSpec("dynamodb", dynamodb_url(dynamodb_server, unique_table("iso")), options)


# ---------------------------------------------------------------------------- sizes and layout


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
    monkeypatch.setattr(dynamodb_module, "OPEN_RUN_MAX_CHUNKS", 4)
    monkeypatch.setattr(dynamodb_module, "MAX_RUNS", 3)
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


# ---------------------------------------------------------------------------- concurrency and crashes


def _increment(state: AgentStateSnapshot) -> None:
    state.metadata["n"] = state.metadata.get("n", 0) + 1
    state.messages.append(AgentMessage.user(f"+1 #{state.metadata['n']}"))


def _increment_worker(spec: BackendSpec, tid: str, threads: int, increments: int) -> None:
    cp = spec.build()
    errors: List[BaseException] = []

    def run() -> None:
        try:
            for _ in range(increments):
                cp.update(tid, _increment)
        except BaseException as exc:  # pragma: no cover - reported through the exit code
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(PROCESS_TIMEOUT)
    cp.close()
    if errors or any(worker.is_alive() for worker in workers):
        os._exit(1)


def test_4_processes_x_4_threads_x_25_updates_end_at_exactly_400(
    dynamodb_spec: BackendSpec, dynamodb_checkpointer: DynamoDbCheckpointer, prefix: str
) -> None:
    tid = prefix + "race"
    ctx = multiprocessing.get_context("fork")
    processes = [ctx.Process(target=_increment_worker, args=(dynamodb_spec, tid, 4, 25)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(PROCESS_TIMEOUT)
        if process.is_alive():  # pragma: no cover - a hang fails below
            process.kill()
            process.join(5)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    final = dynamodb_checkpointer.load(tid)
    assert final is not None and final.metadata["n"] == 400 and final.version == 400
    assert [m.content for m in final.messages] == [f"+1 #{i}" for i in range(1, 401)]


def recipe_messages(recipe: List[List[int]]) -> List[str]:
    """The message contents a head recipe ``[[tag, count], ...]`` promises, in order."""
    return [f"{tag}:{i}" for tag, count in recipe for i in range(count)]


def check_whole(state: Optional[AgentStateSnapshot]) -> int:
    """Assert head and messages come from one committed version; return its last tag."""
    assert state is not None
    recipe = state.metadata["recipe"]
    assert [m.content.split("|")[0] for m in state.messages] == recipe_messages(recipe)  # type: ignore[union-attr]
    return int(recipe[-1][0])


def _crashing_writer(spec: BackendSpec, tid: str, ready: Any, seed: int) -> None:
    """Save large multi-item snapshots (rewrites and appends) forever, until SIGKILLed."""
    rng = random.Random(seed)
    cp = spec.build()
    assert isinstance(cp, DynamoDbCheckpointer)
    cp._chunk_payload_bytes = 4_000  # many chunk items per save ...
    cp._transaction_max_bytes = 16_000  # ... and most saves too big for one transaction
    state = cp.load(tid)
    assert state is not None
    tag = check_whole(state)
    while True:
        tag += 1
        count = rng.randint(1, 30)
        new = [AgentMessage.user(f"{tag}:{i}|" + "x" * 1_500) for i in range(count)]
        if rng.random() < 0.5:
            state = AgentStateSnapshot(messages=new, metadata={"recipe": [[tag, count]]})
        else:
            state.messages += new
            state.metadata["recipe"] = state.metadata["recipe"] + [[tag, count]]
        cp.save(tid, state, force=True)
        ready.set()


def test_writer_killed_at_random_points_never_leaves_a_mixed_snapshot(
    dynamodb_spec: BackendSpec,
    dynamodb_checkpointer: DynamoDbCheckpointer,
    dynamodb_client: Any,
    table: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tid = prefix + "crash"
    dynamodb_checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("0:0")], metadata={"recipe": [[0, 1]]}))
    ctx = multiprocessing.get_context("fork")
    rng = random.Random()
    tags = []
    for _ in range(KILL_ROUNDS):
        ready = ctx.Event()
        writer = ctx.Process(target=_crashing_writer, args=(dynamodb_spec, tid, ready, rng.randrange(2**32)))
        writer.start()
        assert ready.wait(60), "the writer never committed a save"
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(writer.pid, signal.SIGKILL)  # type: ignore[arg-type]
        writer.join(10)
        assert writer.exitcode == -signal.SIGKILL
        reader = dynamodb_spec.build()
        try:
            tags.append(check_whole(reader.load(tid)))
        finally:
            reader.close()
        assert_items_within_limits(dynamodb_client, table, tid)
    assert tags == sorted(tags) and len(set(tags)) > KILL_ROUNDS // 2
    # Chunks of killed writers are never listed by the head; once old enough, a later write deletes them.
    items = raw_items(dynamodb_client, table, tid)
    unreferenced = {item["sk"]["S"] for item in items} - set(referenced_sort_keys(items))
    assert unreferenced, "no kill landed between a save's first chunk write and its clean-up"
    monkeypatch.setattr(dynamodb_module, "ORPHAN_GRACE_SECONDS", -1.0)
    state = dynamodb_checkpointer.load(tid)
    check_whole(state)
    assert state is not None
    state.metadata["after"] = "crashes"
    dynamodb_checkpointer.save(tid, state)
    assert_no_garbage(dynamodb_client, table, tid)
    check_whole(dynamodb_checkpointer.load(tid))


def test_readers_never_see_a_mix_while_another_instance_rewrites(dynamodb_spec: BackendSpec, prefix: str) -> None:
    """Versions of up to 1.5 MB span several Query pages (1 MB each), so a reader's pages can
    straddle a rewrite that deletes the chunks of the version the reader started with."""
    tid = prefix + "readers"
    writer, reader = dynamodb_spec.build(), dynamodb_spec.build()
    assert isinstance(writer, DynamoDbCheckpointer)
    writer._chunk_payload_bytes = 150_000
    writer._transaction_max_bytes = 700_000  # bigger versions take the chunks-first path
    writer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("0:0")], metadata={"recipe": [[0, 1]]}))
    stop = threading.Event()
    failures: List[BaseException] = []

    def write() -> None:
        tag = 0
        try:
            while not stop.is_set():
                tag += 1
                count = 3 + tag % 13
                writer.save(
                    tid,
                    AgentStateSnapshot(
                        messages=[AgentMessage.user(f"{tag}:{i}|" + "y" * 100_000) for i in range(count)],
                        metadata={"recipe": [[tag, count]]},
                    ),
                )
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    seen = []
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            seen.append(check_whole(reader.load(tid)))
    finally:
        stop.set()
        thread.join(60)
        writer.delete(tid)
        writer.close()
        reader.close()
    assert not failures, failures
    assert seen == sorted(seen) and len(set(seen)) > 3


def test_orphaned_chunks_are_ignored_and_old_ones_collected_by_a_later_write(
    dynamodb_checkpointer: DynamoDbCheckpointer, dynamodb_client: Any, table: str, prefix: str
) -> None:
    tid = prefix + "orphans"
    state = AgentStateSnapshot(messages=[AgentMessage.user("kept")])
    dynamodb_checkpointer.save(tid, state)
    old_run = f"{int(time.time()) - 7200:08x}deadbeef"  # a crashed writer two hours ago
    young_run = f"{int(time.time()):08x}cafebabe"  # maybe a writer still at work
    for run in (old_run, young_run):
        dynamodb_client.put_item(
            TableName=table,
            Item={"thread_id": {"S": tid}, "sk": {"S": f"c{run}:000000"}, "p": {"B": b"\x00\x00\x00\x05junk!"}},
        )
    loaded = dynamodb_checkpointer.load(tid)
    assert loaded is not None and loaded.messages == state.messages
    loaded.messages.append(AgentMessage.user("next"))
    dynamodb_checkpointer.save(tid, loaded)
    sort_keys = {item["sk"]["S"] for item in raw_items(dynamodb_client, table, tid)}
    assert f"c{old_run}:000000" not in sort_keys
    assert f"c{young_run}:000000" in sort_keys
    again = dynamodb_checkpointer.load(tid)
    assert again is not None and [m.content for m in again.messages] == ["kept", "next"]
    assert dynamodb_checkpointer.delete(tid) is True
    remaining = {item["sk"]["S"] for item in raw_items(dynamodb_client, table, tid)}
    assert remaining == {f"c{young_run}:000000"}, "delete removes everything but a possibly live writer's run"
    dynamodb_client.delete_item(TableName=table, Key={"thread_id": {"S": tid}, "sk": {"S": f"c{young_run}:000000"}})


# ---------------------------------------------------------------------------- TTL and expiry


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
            assert [info.thread_id for info in cp.iter_threads(prefix, page_size=2)] == expected
        assert [i.message_count for i in by_scan.list_threads(prefix).threads] == [len(t) for t in expected]
    finally:
        for tid in ids:
            by_index.delete(tid)
        by_index.close()
        by_scan.close()


# ---------------------------------------------------------------------------- construction and errors


def test_from_url_reads_region_table_endpoint_credentials_and_options(dynamodb_server: AnyMotoServer) -> None:
    table = unique_table("url")
    url = (
        f"dynamodb://testing:s3cr3t-value@us-east-1/{table}?endpoint_url={dynamodb_server.endpoint_url}"
        "&create_table=true&list_index=&max_connections=3&timeout=2.5&max_attempts=2&retry_mode=adaptive"
        "&ttl_attribute=expires&ttl=30"
    )
    cp = from_url(url)
    try:
        assert isinstance(cp, DynamoDbCheckpointer)
        assert (cp.table_name, cp.region_name, cp.endpoint_url) == (table, "us-east-1", dynamodb_server.endpoint_url)
        assert (cp.list_index, cp.max_connections, cp.read_timeout, cp.max_attempts) == (None, 3, 2.5, 2)
        assert (cp.retry_mode, cp.ttl_attribute, cp.ttl) == ("adaptive", "expires", 30.0)
        assert cp._client().meta.config.max_pool_connections == 3
        assert "s3cr3t" not in repr(cp) and table in repr(cp)
        cp.save("t", AgentStateSnapshot(metadata={"ok": 1}))
        loaded = cp.load("t")
        assert loaded is not None and loaded.metadata == {"ok": 1}
        cp.delete("t")
    finally:
        cp.close()
    for bad in (
        f"dynamodb://us-east-1/{table}?no_such_option=1",
        "dynamodb://us-east-1/",
        "dynamodb://us-east-1/ab",
        f"dynamodb://us-east-1/{table}?create_table=maybe",
        f"dynamodb://us-east-1/{table}?max_connections=many",
    ):
        with pytest.raises(ConfigurationError):
            from_url(bad, **CREDENTIALS)


def test_missing_table_raises_configuration_error_naming_it(dynamodb_server: AnyMotoServer) -> None:
    cp = from_url(dynamodb_url(dynamodb_server, "agents_persist_no_such_table"), **CREDENTIALS)
    try:
        for call in (lambda: cp.load("t"), lambda: cp.save("t", AgentStateSnapshot()), lambda: cp.list_threads()):
            with pytest.raises(ConfigurationError, match="agents_persist_no_such_table"):
                call()
    finally:
        cp.close()


def test_caller_supplied_client_is_used_and_left_open(dynamodb_spec: BackendSpec, dynamodb_client: Any, prefix: str) -> None:
    cp = DynamoDbCheckpointer(table_name(dynamodb_spec), client=dynamodb_client)
    tid = prefix + "client"
    cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("via your client")]))
    assert raw_items(dynamodb_client, table_name(dynamodb_spec), tid)
    cp.delete(tid)
    cp.close()
    assert dynamodb_client.describe_table(TableName=table_name(dynamodb_spec))["Table"]["TableStatus"] == "ACTIVE"


_forked_cp: Optional[DynamoDbCheckpointer] = None


def _forked_updates(tid: str) -> None:
    assert _forked_cp is not None
    for _ in range(10):
        _forked_cp.update(tid, _increment)


def test_forked_children_share_a_caller_client_checkpointer_safely(
    dynamodb_spec: BackendSpec, dynamodb_client: Any, prefix: str
) -> None:
    global _forked_cp
    tid = prefix + "fork-client"
    cp = DynamoDbCheckpointer(table_name(dynamodb_spec), client=dynamodb_client)
    cp.update(tid, _increment)  # the client has been used before the fork
    _forked_cp = cp
    try:
        ctx = multiprocessing.get_context("fork")
        children = [ctx.Process(target=_forked_updates, args=(tid,)) for _ in range(2)]
        for child in children:
            child.start()
        for _ in range(10):
            cp.update(tid, _increment)
        for child in children:
            child.join(PROCESS_TIMEOUT)
        assert [child.exitcode for child in children] == [0, 0]
        final = cp.load(tid)
        assert final is not None and final.metadata["n"] == 31
    finally:
        _forked_cp = None
        cp.delete(tid)
        cp.close()


@pytest.fixture
def own_moto(tmp_path: Path) -> Iterator[MotoServer]:
    server = SerializedMotoServer.start(tmp_path)
    try:
        yield server
    finally:
        server.stop()


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


def test_create_table_refuses_a_table_with_another_key_schema(dynamodb_server: AnyMotoServer, dynamodb_client: Any) -> None:
    table = unique_table("schema")
    dynamodb_client.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    try:
        with pytest.raises(ConfigurationError, match="key schema"):
            from_url(dynamodb_url(dynamodb_server, table), create_table=True, **CREDENTIALS)
    finally:
        dynamodb_client.delete_table(TableName=table)


def test_denied_action_raises_configuration_error_naming_table_and_iam_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto enforces IAM after its first N requests: set up a user allowed to read but not to write."""
    import json

    import boto3

    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "4")
    server = SerializedMotoServer.start(tmp_path)
    monkeypatch.delenv("INITIAL_NO_AUTH_ACTION_COUNT")
    try:
        admin = {"endpoint_url": server.endpoint_url, "region_name": "us-east-1", **CREDENTIALS}
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query"], "Resource": "*"}],
        }
        iam.put_user_policy(UserName="reader", PolicyName="read-only", PolicyDocument=json.dumps(policy))
        table = unique_table("iam")
        boto3.client("dynamodb", **admin).create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "thread_id", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "thread_id", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
        )
        cp = from_url(
            dynamodb_url(server, table),
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            list_index=None,
        )
        try:
            assert cp.load("t") is None  # GetItem/Query are allowed
            with pytest.raises(ConfigurationError, match=rf"{table}.*dynamodb:PutItem"):
                cp.save("t", AgentStateSnapshot())
            with pytest.raises(ConfigurationError, match=rf"{table}.*dynamodb:Scan"):
                cp.list_threads()
            assert key["SecretAccessKey"] not in repr(cp)
        finally:
            cp.close()
    finally:
        server.stop()


def _lose_first_response(cp: Any, operation: str) -> Dict[str, bool]:
    """Make the first ``operation`` request reach the server but lose its response, so botocore retries it."""
    from botocore.exceptions import ReadTimeoutError

    session = cp._client()._endpoint.http_session
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
