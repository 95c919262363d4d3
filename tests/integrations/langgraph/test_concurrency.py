"""Two processes writing one LangGraph thread at once lose no checkpoint, no write and no list item."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import pytest
from langgraph.checkpoint.base import empty_checkpoint

from agents_persist.langgraph import Checkpointer
from tests.integrations.langgraph import workers
from tests.integrations.langgraph.conftest import SHARED_LANGGRAPH_BACKENDS, cleanup
from tests.spec import BackendSpec

STEPS = 30


@pytest.mark.parametrize("backend_name", SHARED_LANGGRAPH_BACKENDS)
def test_two_processes_race_on_one_thread(backend_name: str, request: pytest.FixtureRequest, prefix: str) -> None:
    spec: BackendSpec = request.getfixturevalue(f"{backend_name}_spec")
    backend = spec.build()
    try:
        _race(Checkpointer(backend, prefix=prefix), spec)
    finally:
        cleanup(backend, prefix)
        backend.close()


def _race(saver: Checkpointer, spec: BackendSpec) -> None:
    base = empty_checkpoint()
    base["channel_values"] = {"messages": ["hello"]}
    base["channel_versions"] = {"messages": saver.get_next_version(None, None)}
    root = {"configurable": {"thread_id": workers.THREAD, "checkpoint_ns": ""}}
    start = saver.put(root, base, {"source": "input", "step": -1}, dict(base["channel_versions"]))

    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 8  # after both children have started and read the start
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        futures = [pool.submit(workers.chain, spec, saver.prefix, name, STEPS, start, start_at) for name in ("a", "b")]
        results = {name: future.result(timeout=300) for name, future in zip("ab", futures)}
    chains = {name: written for name, (written, _retries) in results.items()}
    assert sum(retries for _written, retries in results.values()) > 0, "the two processes never raced"

    listed = list(Checkpointer(saver.backend, prefix=saver.prefix).list({"configurable": {"thread_id": workers.THREAD}}))
    assert len(listed) == 1 + 2 * STEPS
    by_id = {t.checkpoint["id"]: t for t in listed}
    for name, written in chains.items():
        for i, (checkpoint_id, length) in enumerate(written):
            tup = by_id[checkpoint_id]
            assert tup.checkpoint["channel_values"]["messages"] == ["hello"] + [f"{name}-{j}" for j in range(i + 1)]
            assert len(tup.checkpoint["channel_values"]["messages"]) == length
            assert tup.checkpoint["channel_values"]["worker"] == name
            assert [(w[0], w[2]) for w in tup.pending_writes or []] == [(f"task-{name}-{i}", [f"{name}-{i}-pending"])]
            assert tup.metadata["worker"] == name
        # each chain's parent links lead back to the shared start
        assert by_id[written[0][0]].parent_config["configurable"]["checkpoint_id"] == start["configurable"]["checkpoint_id"]
