"""Concurrency and crashes: racing processes, writers killed mid-save, readers during rewrites, orphans."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
from typing import Any, List, Optional

import pytest

from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    DynamoDbCheckpointer,
)
from agents_persist.backends.dynamodb import layout
from tests.backends.dynamodb.helpers import (
    KILL_ROUNDS,
    PROCESS_TIMEOUT,
    assert_items_within_limits,
    assert_no_garbage,
    increment,
    raw_items,
)
from tests.spec import BackendSpec


def _increment_worker(spec: BackendSpec, tid: str, threads: int, increments: int) -> None:
    cp = spec.build()
    errors: List[BaseException] = []

    def run() -> None:
        try:
            for _ in range(increments):
                cp.update(tid, increment)
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
    cp.store.planner.chunk_payload_bytes = 4_000  # many chunk items per save ...
    cp.store.planner.transaction_max_bytes = 16_000  # ... and most saves too big for one transaction
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
    # Chunks of killed writers are registered in the head before they are written, and the next
    # commit removes them (tests/backends/dynamodb/test_crash_debris.py counts them); whatever a kill
    # left is never listed by the head, and once old enough a later write deletes it.
    monkeypatch.setattr(layout, "ORPHAN_GRACE_SECONDS", -1.0)
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
    writer.store.planner.chunk_payload_bytes = 150_000
    writer.store.planner.transaction_max_bytes = 700_000  # bigger versions take the chunks-first path
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
                    force=True,
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
