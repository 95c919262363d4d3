"""No lost update across threads, processes and forks; no waiting across thread IDs."""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import List, Optional

from agents_persist import AgentMessage, AgentStateSnapshot, Checkpointer, ConflictError
from tests.conftest import contract_spec
from tests.spec import BackendSpec

PROCESS_TIMEOUT = 240.0


def increment(state: AgentStateSnapshot) -> None:
    state.metadata["n"] = state.metadata.get("n", 0) + 1
    state.messages.append(AgentMessage.user(f"+1 #{state.metadata['n']}"))


def run_threads(target, count: int) -> None:  # type: ignore[no-untyped-def]
    errors: List[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROCESS_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    assert not errors, errors


def test_plain_load_modify_save_never_loses_an_update_unnoticed(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "plain"
    checkpointer.save(tid, AgentStateSnapshot(metadata={"n": 0}))
    landed = [0] * 4
    conflicts = [0] * 4

    def worker(index: int) -> None:
        for _ in range(100):
            state = checkpointer.load(tid)
            assert state is not None
            state.metadata["n"] += 1
            try:
                checkpointer.save(tid, state)
                landed[index] += 1
            except ConflictError:
                conflicts[index] += 1

    run_threads(worker, 4)
    final = checkpointer.load(tid)
    assert final is not None
    assert sum(landed) + sum(conflicts) == 400
    assert final.metadata["n"] == sum(landed), "every save that returned must be counted"
    assert final.version == 1 + sum(landed)


def test_threads_racing_update_end_at_exact_count(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "threads"
    run_threads(lambda _: [checkpointer.update(tid, increment) for _ in range(200)], 8)
    final = checkpointer.load(tid)
    assert final is not None
    assert final.metadata["n"] == 1600
    assert len(final.messages) == 1600
    assert [m.content for m in final.messages] == [f"+1 #{i}" for i in range(1, 1601)]


def test_busy_thread_id_does_not_block_another(checkpointer: Checkpointer, prefix: str) -> None:
    busy, other = prefix + "busy", prefix + "other"
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with checkpointer.transaction(busy) as state:
            entered.set()
            release.wait(30)
            state.metadata["held"] = True

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(10)
        done = threading.Event()
        worker = threading.Thread(target=lambda: (checkpointer.save(other, AgentStateSnapshot()), done.set()))
        worker.start()
        assert done.wait(10), "a save on another thread ID waited for the busy one"
        assert holder.is_alive() and not release.is_set()
        # The busy thread ID itself is serialized: a save on it waits for the holder.
        blocked = threading.Event()
        waiter = threading.Thread(target=lambda: (checkpointer.update(busy, increment), blocked.set()))
        waiter.start()
        assert not blocked.wait(0.3), "a second writer on the busy thread ID did not wait"
    finally:
        release.set()
        holder.join(10)
    waiter.join(10)
    assert blocked.is_set()
    final = checkpointer.load(busy)
    assert final is not None and final.metadata == {"held": True, "n": 1} and final.version == 2


def test_lock_table_does_not_grow(checkpointer: Checkpointer, prefix: str) -> None:
    for i in range(300):
        tid = f"{prefix}lock-{i}"
        checkpointer.save(tid, AgentStateSnapshot())
        checkpointer.load(tid)
        checkpointer.delete(tid)
    assert len(checkpointer._locks) == 0


def _process_worker(spec: BackendSpec, tid: str, threads: int, increments: int, failures: "multiprocessing.Queue[str]") -> None:
    cp = spec.build()
    try:
        run_threads(lambda _: [cp.update(tid, increment) for _ in range(increments)], threads)
    except BaseException as exc:
        failures.put(repr(exc))
        raise
    finally:
        cp.close()


def _start_processes(target, args_list: List[tuple]) -> None:  # type: ignore[no-untyped-def]
    ctx = multiprocessing.get_context("fork")
    failures = ctx.Queue()
    processes = [ctx.Process(target=target, args=(*args, failures)) for args in args_list]
    for process in processes:
        process.start()
    deadline = time.monotonic() + PROCESS_TIMEOUT
    for process in processes:
        process.join(max(0.1, deadline - time.monotonic()))
    hung = [p.pid for p in processes if p.is_alive()]
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(5)
    assert not hung, f"worker processes {hung} hung"
    messages = []
    while not failures.empty():
        messages.append(failures.get())
    assert all(p.exitcode == 0 for p in processes), messages


def test_processes_racing_update_end_at_exact_count(
    shared_checkpointer: Checkpointer, shared_backend_spec: BackendSpec, prefix: str
) -> None:
    processes, threads, increments = contract_spec(shared_backend_spec.name).process_workload
    tid = prefix + "procs"
    _start_processes(_process_worker, [(shared_backend_spec, tid, threads, increments)] * processes)
    final = shared_checkpointer.load(tid)
    expected = processes * threads * increments
    assert final is not None
    assert final.metadata["n"] == expected
    assert [m.content for m in final.messages] == [f"+1 #{i}" for i in range(1, expected + 1)]


_inherited: Optional[Checkpointer] = None


def _forked_worker(tid: str, failures: "multiprocessing.Queue[str]") -> None:
    assert _inherited is not None
    try:
        for _ in range(20):
            _inherited.update(tid, increment)
    except BaseException as exc:
        failures.put(repr(exc))
        raise


def test_forked_child_uses_inherited_checkpointer_safely(shared_checkpointer: Checkpointer, prefix: str) -> None:
    """A child forked after the parent used its pools gets fresh connections; the parent's keep working."""
    global _inherited
    tid = prefix + "fork"
    shared_checkpointer.update(tid, increment)  # the parent's pool now holds live connections
    _inherited = shared_checkpointer
    try:
        ctx = multiprocessing.get_context("fork")
        # While the children work, the parent keeps using the same checkpointer.
        stop = threading.Event()
        parent_count = [0]

        def parent_load() -> None:
            while not stop.is_set():
                assert shared_checkpointer.load(tid) is not None
                parent_count[0] += 1

        loader = threading.Thread(target=parent_load)
        loader.start()
        try:
            _start_processes(_forked_worker, [(tid,), (tid,)])
        finally:
            stop.set()
            loader.join(30)
        assert ctx is not None and parent_count[0] > 0
    finally:
        _inherited = None
    for _ in range(5):
        shared_checkpointer.update(tid, increment)
    final = shared_checkpointer.load(tid)
    assert final is not None and final.metadata["n"] == 1 + 40 + 5


def test_different_instances_in_threads_never_lose_updates(shared_backend_spec: BackendSpec, prefix: str) -> None:
    """Two checkpointers on one store (like two machines) race update() from threads."""
    tid = prefix + "two-instances"
    instances = [shared_backend_spec.build(), shared_backend_spec.build()]
    try:
        run_threads(lambda i: [instances[i % 2].update(tid, increment) for _ in range(25)], 4)
        final = instances[0].load(tid)
        assert final is not None and final.metadata["n"] == 100
    finally:
        instances[0].delete(tid)
        for cp in instances:
            cp.close()
