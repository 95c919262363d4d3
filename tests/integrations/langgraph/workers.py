"""Child-process side of the two-process test: checkpoints chained on one LangGraph thread, raced with another process."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Tuple

from langgraph.checkpoint.base import empty_checkpoint

from agents_persist.langgraph import Checkpointer
from tests.spec import BackendSpec

THREAD = "shared"


def chain(
    spec: BackendSpec, prefix: str, worker: str, steps: int, start: Any, start_at: float
) -> Tuple[List[Tuple[str, int]], int]:
    """From the checkpoint ``start`` names, put ``steps`` checkpoints, each adding one message.

    Returns the (id, length) of each and how many appends were retried.

    Both processes read the start first, then begin writing at the same moment ``start_at``.
    """
    backend = spec.build()
    try:
        saver = Checkpointer(backend, prefix=prefix)
        base = saver.get_tuple(start)
        assert base is not None
        messages: List[str] = list(base.checkpoint["channel_values"]["messages"])
        versions: Dict[str, Any] = dict(base.checkpoint["channel_versions"])
        config = base.config
        time.sleep(max(0.0, start_at - time.time()))
        written: List[Tuple[str, int]] = []
        for i in range(steps):
            messages = messages + [f"{worker}-{i}"]
            checkpoint = empty_checkpoint()
            versions = {**versions, "messages": saver.get_next_version(versions.get("messages"), None)}
            checkpoint["channel_values"] = {"messages": messages, "worker": worker}
            checkpoint["channel_versions"] = dict(versions)
            new_versions = {"messages": versions["messages"]}
            if i == 0:
                versions["worker"] = saver.get_next_version(None, None)
                checkpoint["channel_versions"]["worker"] = versions["worker"]
                new_versions["worker"] = versions["worker"]
            config = saver.put(config, checkpoint, {"source": "loop", "step": i, "worker": worker}, new_versions)
            saver.put_writes(config, [("messages", [f"{worker}-{i}-pending"])], f"task-{worker}-{i}")
            written.append((checkpoint["id"], len(messages)))
        return written, saver.append_retries
    finally:
        backend.close()
