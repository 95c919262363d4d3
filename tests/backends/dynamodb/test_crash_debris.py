"""Crash debris: writers SIGKILLed mid-save leave no item without an expiry once the thread is saved again.

Writers register the runs they write outside a transaction in the head
(``pd``) before writing them; the next commit voids and deletes them, and
lists what it unreferenced (``gc``) so that the commit after it deletes
that again should its writer die before cleaning up.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from typing import Any, Dict, List

from agents_persist import AgentMessage, AgentStateSnapshot, DynamoDbCheckpointer
from tests.backends.dynamodb.helpers import raw_items, referenced_sort_keys
from tests.backends.dynamodb.test_crashes import _crashing_writer, check_whole
from tests.spec import BackendSpec

ROUNDS = 13
WRITERS_PER_THREAD = 2
THREADS = 2  # 13 rounds x 2 threads x 2 writers = 52 kills


def debris(client: Any, table: str, thread_id: str) -> Dict[str, int]:
    """Items the head does not reference: with and without an expiry (the TTL attribute)."""
    items = raw_items(client, table, thread_id)
    referenced = set(referenced_sort_keys(items))
    loose = [item for item in items if item["sk"]["S"] not in referenced]
    return {"without_expiry": sum("ttl" not in item for item in loose), "with_expiry": sum("ttl" in item for item in loose)}


def test_52_writers_killed_mid_save_leave_no_debris_after_the_next_save(
    dynamodb_spec: BackendSpec, dynamodb_checkpointer: DynamoDbCheckpointer, dynamodb_client: Any, table: str, prefix: str
) -> None:
    tids = [f"{prefix}debris{i}" for i in range(THREADS)]
    for tid in tids:
        dynamodb_checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("0:0")], metadata={"recipe": [[0, 1]]}))
    ctx = multiprocessing.get_context("fork")
    rng = random.Random()
    versions: Dict[str, List[int]] = {tid: [1] for tid in tids}
    kills = 0
    started = time.monotonic()
    for _ in range(ROUNDS):
        writers = []
        for tid in tids:
            for _ in range(WRITERS_PER_THREAD):
                ready = ctx.Event()
                writer = ctx.Process(target=_crashing_writer, args=(dynamodb_spec, tid, ready, rng.randrange(2**32)))
                writer.start()
                writers.append((writer, ready))
        for _writer, ready in writers:
            assert ready.wait(60), "a writer never committed a save"
        time.sleep(rng.uniform(0.0, 0.3))
        for writer, _ in writers:
            os.kill(writer.pid, signal.SIGKILL)  # type: ignore[arg-type]
        for writer, _ in writers:
            writer.join(10)
            assert writer.exitcode == -signal.SIGKILL
            kills += 1
        for tid in tids:
            state = dynamodb_checkpointer.load(tid)
            check_whole(state)  # a committed snapshot, whole
            assert state is not None
            assert state.version >= versions[tid][-1], "the version went backwards"
            versions[tid].append(state.version)
    left_before = {tid: debris(dynamodb_client, table, tid) for tid in tids}
    for tid in tids:  # the next save of each thread removes what the killed writers left
        state = dynamodb_checkpointer.load(tid)
        assert state is not None
        state.metadata["after"] = "crashes"
        dynamodb_checkpointer.save(tid, state)
        check_whole(dynamodb_checkpointer.load(tid))
    left_after = {tid: debris(dynamodb_client, table, tid) for tid in tids}
    print(
        f"\n{kills} kills in {time.monotonic() - started:.0f}s; versions reached {[v[-1] for v in versions.values()]}; "
        f"loose items before the next save {left_before}, after it {left_after}"
    )
    assert kills >= 50
    assert all(v[-1] > ROUNDS for v in versions.values()), "the writers hardly saved"
    assert all(left["without_expiry"] == 0 for left in left_after.values()), left_after
