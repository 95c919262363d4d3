"""What the spawned processes of test_processes.py run: each builds its own checkpointer from the spec.

A process runs a list of steps, each started at the same moment as the
other process's step of the same rank (a barrier), and writes what each
step returned to a JSON file.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from agents_persist.openai_agents import Session
from tests.spec import BackendSpec

#: Batch sizes of the adding processes, in turn: single items and small turns, as the Runner writes them.
BATCH_SIZES = (1, 3, 2)

#: Longest pause between two calls of one process, in seconds.
PAUSE = 0.005

#: ``("add", session_id, worker, batches)``, ``("pop", session_id)`` (until empty) or ``("pop_some", session_id, n)``.
Step = Tuple[Any, ...]


def batches(worker: int, count: int) -> List[List[Dict[str, Any]]]:
    """The ``count`` batches worker ``worker`` adds; item ``j`` of batch ``i`` is ``w<worker>-<i>-<j>``."""
    return [
        [{"content": f"w{worker}-{i}-{j}", "role": "user"} for j in range(BATCH_SIZES[i % len(BATCH_SIZES)])]
        for i in range(count)
    ]


async def _pause() -> None:
    """A few milliseconds between calls, as between an agent's turns, so the two processes' calls interleave."""
    await asyncio.sleep(random.uniform(0, PAUSE))


async def _step(checkpointer: Any, step: Step) -> List[Optional[Any]]:
    kind, session_id, *args = step
    session = Session(session_id, checkpointer)
    done: List[Optional[Any]] = []
    if kind == "add":
        for batch in batches(*args):
            await session.add_items(batch)
            await _pause()
    elif kind == "pop":
        while (item := await session.pop_item()) is not None:
            done.append(item)
            await _pause()
    elif kind == "pop_some":
        for _ in range(args[0]):
            done.append(await session.pop_item())
            await _pause()
    else:
        raise ValueError(kind)
    return done


def run(spec: BackendSpec, steps: Sequence[Step], out: str, barrier: Any) -> None:
    """Run ``steps`` in turn, each released with the other process's; write their results to ``out``."""
    from agents_persist import AsyncCheckpointer

    async def main() -> List[List[Any]]:
        async with AsyncCheckpointer(spec.build()) as checkpointer:
            await checkpointer.message_count(steps[0][1])  # connect before the start line
            results = []
            for step in steps:
                barrier.wait(120)
                results.append(await _step(checkpointer, step))
            return results

    Path(out).write_text(json.dumps(asyncio.run(main())))
