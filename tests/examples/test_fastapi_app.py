"""examples/fastapi_app.py under a real ``uvicorn --workers 2``: 200 concurrent httpx requests to one thread lose nothing."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import httpx
import pytest

from tests.examples.conftest import Served
from tests.integrations.support import ROOT, serving, wait_until_answering

WORKERS, REQUESTS = 2, 200


async def _hammer(base: str, thread_id: str) -> List[Tuple[int, Dict[str, Any]]]:
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
    async with httpx.AsyncClient(base_url=base, timeout=60.0, limits=limits) as client:

        async def post(i: int) -> Tuple[int, Dict[str, Any]]:
            reply = await client.post(f"/threads/{thread_id}/messages", json={"content": f"m{i}"})
            return reply.status_code, reply.json()

        return await asyncio.gather(*(post(i) for i in range(REQUESTS)))


@pytest.mark.slow
def test_uvicorn_2_workers_keeps_all_200_concurrent_posts(served: Served, tmp_path: Path, prefix: str) -> None:
    spec, base, thread_id = served.spec, served.base, f"{prefix}uvicorn"
    # as the example's docstring runs it; the store comes from the environment
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "examples"), "fastapi_app:app"]
    command += ["--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(served.port)]
    command += ["--log-level", "warning", "--timeout-graceful-shutdown", "5"]
    with serving(command, tmp_path, "uvicorn", env=served.env) as (process, log):
        wait_until_answering(f"{base}/threads/{thread_id}", process, log)  # 404: up, and nothing stored yet
        started = time.monotonic()
        replies = asyncio.run(_hammer(base, thread_id))
        elapsed = time.monotonic() - started

    assert [status for status, _ in replies] == [200] * REQUESTS, [body for status, body in replies if status != 200][:3]
    assert sorted(body["version"] for _, body in replies) == list(range(1, REQUESTS + 1))
    with spec.build() as checkpointer:
        state = checkpointer.load(thread_id)
        try:
            assert state is not None and state.version == REQUESTS
            assert sorted(m.content for m in state.messages) == sorted(f"m{i}" for i in range(REQUESTS))
        finally:
            checkpointer.delete(thread_id)
    pids = {body["pid"] for _, body in replies}
    retries = sum(body["retries"] for _, body in replies)
    print(
        f"\nuvicorn[{spec.name}]: {REQUESTS} concurrent POSTs in {elapsed:.2f}s served by {len(pids)} workers, "
        f"{retries} conflict retries; stored {len(state.messages)} messages"
    )
