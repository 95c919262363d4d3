"""Two processes on one session at once, on every shared backend: nothing lost, nothing popped twice, order kept.

One pair of spawned processes (a fresh interpreter each, its own
connections) runs three races in turn, each released at once by a barrier:
both add batches to one session; both pop another session empty; one adds
while the other pops.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from pathlib import Path
from typing import Any, List

from agents_persist import Checkpointer
from agents_persist.openai_agents import Session
from tests.integrations.openai_agents import workers
from tests.spec import BackendSpec

#: add_items calls per adding process.
BATCHES = 40
#: Items in the session before both processes pop it empty.
POP_ITEMS = 60
#: pop_item calls of the process popping while the other adds.
POPS = 30


def _contents(items: List[Any]) -> List[str]:
    return [item["content"] for item in items if item is not None]


def test_two_processes_on_one_session(
    shared_backend_spec: BackendSpec, shared_checkpointer: Checkpointer, prefix: str, tmp_path: Path
) -> None:
    added, popped, mixed = f"{prefix}added", f"{prefix}popped", f"{prefix}mixed"
    sessions = {sid: Session(sid, shared_checkpointer) for sid in (added, popped, mixed)}
    to_pop = [{"content": f"i{n:03d}", "role": "user"} for n in range(POP_ITEMS)]
    asyncio.run(sessions[popped].add_items(to_pop))  # type: ignore[arg-type]
    plans = [
        [("add", added, 0, BATCHES), ("pop", popped), ("add", mixed, 0, BATCHES)],
        [("add", added, 1, BATCHES), ("pop", popped), ("pop_some", mixed, POPS)],
    ]
    outs = [str(tmp_path / f"worker-{n}.json") for n in range(2)]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=workers.run, args=(shared_backend_spec, plan, out, barrier)) for plan, out in zip(plans, outs)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(300)
    hung = [proc.pid for proc in procs if proc.is_alive()]
    for proc in procs:
        if proc.is_alive() and proc.pid is not None:
            proc.kill()
    assert not hung, f"processes {hung} hung"
    assert [proc.exitcode for proc in procs] == [0, 0]
    results = [json.loads(Path(out).read_text()) for out in outs]

    def stored(sid: str) -> List[str]:
        return _contents(asyncio.run(sessions[sid].get_items()))

    # Both adding: every item, each process's in its order, each add_items in one piece.
    items = stored(added)
    for worker in (0, 1):
        batches = [_contents(batch) for batch in workers.batches(worker, BATCHES)]
        assert [c for c in items if c.startswith(f"w{worker}-")] == [c for batch in batches for c in batch]
        for batch in batches:
            start = items.index(batch[0])
            assert items[start : start + len(batch)] == batch
    assert len(items) == 2 * sum(len(batch) for batch in workers.batches(0, BATCHES))
    switches = sum(1 for a, b in zip(items, items[1:]) if a[:2] != b[:2])
    assert switches > 1, "the two processes' adds did not overlap: no race was run"

    # Both popping: each item popped exactly once, newest first as each process saw it.
    pops = [_contents(result[1]) for result in results]
    assert sorted(pops[0] + pops[1]) == _contents(to_pop)
    assert all(mine == sorted(mine, reverse=True) for mine in pops)
    assert all(pops), "one process popped nothing: no race was run"
    assert stored(popped) == []

    # One adding while the other pops: nothing lost or doubled, the rest in order.
    taken = _contents(results[1][2])
    left = stored(mixed)
    appended = [c for batch in workers.batches(0, BATCHES) for c in _contents(batch)]
    assert len(set(taken)) == len(taken) and sorted(left + taken) == sorted(appended)
    assert left == [c for c in appended if c not in set(taken)]
    print(
        f"\n{shared_backend_spec.name}: {len(items)} items added by two processes ({switches} switches between them);"
        f" popped {len(pops[0])} + {len(pops[1])}; {len(taken)} popped while {len(appended)} were added"
    )
