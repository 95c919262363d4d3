"""Concurrency and consistency: first saves racing, loads during rewrites, connections in parallel."""

from __future__ import annotations

import threading
import uuid
from typing import List

from agents_persist import AgentMessage, AgentStateSnapshot, ConflictError, from_url
from tests.backends.postgres.helpers import backend_pids, load_while_writing, row_locks, scalar, snapshot, wait_for, with_app_name
from tests.spec import BackendSpec


def test_concurrent_first_saves_with_expected_version_zero_let_exactly_one_win(
    postgres_spec: BackendSpec, prefix: str
) -> None:
    tid = prefix + "first"
    instances = [postgres_spec.build() for _ in range(8)]  # separate instances: no shared in-process lock
    barrier = threading.Barrier(8)
    outcomes: List[str] = []

    def attempt(index: int) -> None:
        barrier.wait()
        try:
            instances[index].save(tid, snapshot(f"writer {index}"), expected_version=0)
            outcomes.append("saved")
        except ConflictError as exc:
            assert exc.actual_version == 1
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert sorted(outcomes) == ["conflict"] * 7 + ["saved"]
        loaded = instances[0].load(tid)
        assert loaded is not None and loaded.version == 1 and len(loaded.messages) == 1
    finally:
        instances[0].delete(tid)
        for instance in instances:
            instance.close()


def test_loads_never_mix_two_versions_under_concurrent_rewrites(postgres_spec: BackendSpec, prefix: str) -> None:
    tid = prefix + "mix"
    writer, reader = postgres_spec.build(), postgres_spec.build()
    histories = {"a": [AgentMessage.user(f"a{i}") for i in range(40)], "b": [AgentMessage.user(f"b{i}") for i in range(70)]}
    writer.save(tid, AgentStateSnapshot(messages=histories["a"], metadata={"kind": "a"}))
    seen = {"a": 0, "b": 0}

    def rewrite(stop: threading.Event) -> None:
        i = 0
        while not stop.is_set():
            kind = "ab"[i % 2]
            writer.save(tid, AgentStateSnapshot(messages=list(histories[kind]), metadata={"kind": kind}), force=True)
            i += 1

    def load() -> None:
        state = reader.load(tid)
        assert state is not None
        kind = state.metadata["kind"]
        assert state.messages == histories[kind], "head and log must come from one committed version"
        seen[kind] += 1

    try:
        load_while_writing(rewrite, load)
    finally:
        writer.delete(tid)
        writer.close()
        reader.close()
    assert seen["a"] > 0 and seen["b"] > 0


def test_eight_threads_hold_eight_connections_at_once(pg_url: str, schema: str, prefix: str) -> None:
    app = f"ap-par-{uuid.uuid4().hex[:8]}"
    checkpointer = from_url(with_app_name(pg_url, app), schema=schema, max_connections=8)
    tids = [f"{prefix}par{i}" for i in range(8)]
    for tid in tids:
        checkpointer.save(tid, snapshot("start"))
    versions: List[int] = []
    try:
        with row_locks(pg_url, schema, tids):

            def save_next(tid: str) -> None:
                versions.append(checkpointer.save(tid, snapshot("next"), force=True))

            threads = [threading.Thread(target=save_next, args=(tid,)) for tid in tids]
            for thread in threads:
                thread.start()
            query = (
                "SELECT count(DISTINCT pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND wait_event_type = 'Lock' AND state = 'active'"
            )
            # All eight saves wait inside the server at the same time, each on its own connection.
            wait_for(lambda: scalar(pg_url, query, (app,)) == 8, what="8 concurrently waiting connections")
        for thread in threads:
            thread.join(30)
        assert sorted(versions) == [2] * 8
        assert len(backend_pids(pg_url, app)) == 8
    finally:
        for tid in tids:
            checkpointer.delete(tid)
        checkpointer.close()
